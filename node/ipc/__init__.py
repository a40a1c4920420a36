"""Inter-process plumbing: shared memory, latches, PMSignal, light-weight locks."""
