"""The two classes, their names and the decision threshold: defined once, imported everywhere.

Kept apart from the sequence code so that the train stage, which needs only the threshold
for its accuracy, does not depend on how sequences are drawn.
"""

RIGHT, LEFT = 1, 0
# The one spelling of the labels, e.g. in the confusion matrix; captions capitalise them.
LABEL_NAMES = {LEFT: "left", RIGHT: "right"}
# A sequence is predicted "right" when the model's probability is at least this.
THRESHOLD = 0.5
