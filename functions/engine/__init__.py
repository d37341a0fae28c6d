"""Engine functions: the state machine's Advance step, human waits' callback and timeout."""
