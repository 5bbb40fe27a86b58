"""Model loading by URI, torch thread settings and micro-batching for the function runtime.

``uri`` resolves a model URI to a verified local file and never reaches a model hub;
``torch_setup`` fixes torch's threading on purpose; ``batching`` groups concurrent
events into one forward pass on a single thread that owns torch.
"""
