"""Labelling new audio with a saved model: ``apply`` (one function per kind of model), ``inputs`` (files, folders and
URLs to one answer each), ``prediction`` (what an answer is), and segment files and timeline plots."""
