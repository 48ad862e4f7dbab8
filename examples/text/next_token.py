"""The lecture's slide: the model's most likely next tokens and their probabilities.

    python examples/text/next_token.py runs/my-gpt "import "
    # e.g.  os 21.0%, sys 9.8%, re 6.1%, ...
"""

import sys

import zoo
from zoo.text.generate import format_table, next_token_table

if len(sys.argv) != 3:
    sys.exit(__doc__)
model = zoo.load(sys.argv[1]).eval()
print(format_table(next_token_table(model, sys.argv[2], k=10)))
