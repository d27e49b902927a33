"""The saved model: its card, its arrays, and what applies them (numpy only, so labelling starts fast)."""
