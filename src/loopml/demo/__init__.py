"""``loopml demo``: the whole loop closing by itself on the embedded default workspace.

data → features → training pipeline → gated promotion → serving → monitoring → drift alert →
event-triggered retraining → canary → rollback, in a fresh workspace (a git repository) the
user can keep exploring. :class:`loopml.demo.loop.Demo` runs the stages; the data is
:mod:`loopml.demo.data`, the project files it writes are :mod:`loopml.demo.project`.
"""
