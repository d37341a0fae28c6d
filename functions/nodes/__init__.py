"""One function per node type the state machine runs; ACTION.CODE has its own."""
