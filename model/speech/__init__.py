"""Speech: Whisper transcripts with timestamps, subtitle exports, and budgeted subtitle lines for prompts."""

from model.speech.subtitles import save_subtitles, subtitle_lines, to_srt, to_vtt
from model.speech.transcriber import (
    FasterWhisperTranscriber,
    OpenAIWhisperTranscriber,
    Transcriber,
    build_transcriber,
)
from model.speech.transcript import AudioInputError, Segment, SpeechError, Transcript, Word

__all__ = [
    "AudioInputError",
    "FasterWhisperTranscriber",
    "OpenAIWhisperTranscriber",
    "Segment",
    "SpeechError",
    "Transcriber",
    "Transcript",
    "Word",
    "build_transcriber",
    "save_subtitles",
    "subtitle_lines",
    "to_srt",
    "to_vtt",
]
