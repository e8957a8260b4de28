"""Echo-aware listening while the robot speaks: cancel its own voice, hear a person cut in."""
