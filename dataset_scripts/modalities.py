"""The modalities, in the one order the package uses for signatures, loops, columns and tables."""

MODALITIES: tuple[str, ...] = ("text", "audio", "visual")
