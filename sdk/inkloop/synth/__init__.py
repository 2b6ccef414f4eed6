"""``inkloop synth``: labelled born-digital pages from real signature crops.

Why: a detector trained on scans misses signatures on born-digital documents (a placed signature
image, ink drawn in a PDF viewer); a team moving to such documents needs pages of that kind with
labels before it has reviewed any. This stage makes them: contracts generated in five languages
and the team's own blank templates, signed on the places the verdict stage finds, with real
crops as ink of every kind a digital document carries, and with negatives on purpose.
"""

from inkloop.synth.build import SynthError, SynthOptions, synthesize

__all__ = ["SynthError", "SynthOptions", "synthesize"]
