"""Lessons: ``docs/lessons/NN-<topic>.md``, run step by step (``netlab lesson N``) or checked.

- :mod:`.document` reads a lesson: its prose and its ``console`` blocks of ``$ netlab ...``
  commands with the output each one gives;
- :mod:`.expect` compares real output with a block's, placeholders standing for what varies;
- :mod:`.runner` runs a lesson's commands against a real lab (under another lab name when
  checking, so a person's labs are never touched) and tears down what it built.
"""
