"""MLflow's REST API over a loopml workspace: an MLflow run is a loopml run, a registered
model a loopml model (``tracking.py``, ``registry.py``, ``artifacts.py``)."""
