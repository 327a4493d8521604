"""Everything that computes: media, InternVideo2, speech, memory and LLM engines."""
