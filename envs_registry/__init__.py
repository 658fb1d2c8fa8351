"""Gymnasium registrations (``AlgInd/<Task>-v0``); filled by the environments issue."""
