"""Users, API tokens and permissions of the team server (``loopml server --auth``)."""
