"""Task metrics as pure numpy functions of predictions and references: no torch, no I/O."""
