"""Data: VSFA VQA construction, label-free audit, benchmark loaders."""
