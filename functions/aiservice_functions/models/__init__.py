"""Model loading by URI, torch thread settings and micro-batching for the function runtime.

``uri`` resolves a model URI to a verified local file and never reaches a model hub;
``torch_setup`` fixes torch's threading on purpose; ``batching`` groups concurrent
events into one forward pass on a single thread that owns torch. ``linear_head`` is the
classification head (file format included) that the sentiment and topic functions
share; ``head_training`` and ``generated_text`` rebuild their shipped head files.
"""
