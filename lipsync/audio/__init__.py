"""Speech features for the generator engines (Wav2Lip's mel spectrogram)."""

from lipsync.audio.mel import MEL_STEP_SIZE, SAMPLE_RATE, mel_chunks, melspectrogram

__all__ = ["MEL_STEP_SIZE", "SAMPLE_RATE", "mel_chunks", "melspectrogram"]
