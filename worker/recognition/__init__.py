"""Image -> crops -> (batched model) -> readings. Importable without Celery or FastAPI.

``Recognizer.cut`` / ``cut_boxes`` turn an ink map into Fields of normalised 28x28 crops without
touching the model; ``Recognizer.read`` turns a field's probabilities into a Reading. See pipeline.py.
"""

from worker.recognition.pipeline import Choice, Field, Option, Recognizer

__all__ = ["Recognizer", "Field", "Choice", "Option"]
