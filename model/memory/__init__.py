"""Long-video memory: clip records cached on disk, time-aware questions, cited answers."""
