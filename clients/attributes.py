"""A client's personal fields: a few named strings a mailing's text may put in (`{name|customer}`).

Pure rules, no Django: the model, the API, the admin and the import check the same ones.
"""

import re

ATTRIBUTE_KEY_PATTERN = r"[a-z][a-z0-9_]{0,31}"
ATTRIBUTES_MAX = 10
ATTRIBUTE_VALUE_MAX_LENGTH = 64


def attribute_errors(value: object) -> list[str]:
    """What is wrong with a client's attributes: a JSON object of at most ATTRIBUTES_MAX keys
    (ATTRIBUTE_KEY_PATTERN) to non-empty strings of at most ATTRIBUTE_VALUE_MAX_LENGTH characters."""
    if not isinstance(value, dict):
        return ['Enter an object of named strings, such as {"name": "Anna"}.']
    errors = []
    if len(value) > ATTRIBUTES_MAX:
        errors.append(f"At most {ATTRIBUTES_MAX} attributes; got {len(value)}.")
    for key, item in value.items():
        if not isinstance(key, str) or not re.fullmatch(ATTRIBUTE_KEY_PATTERN, key):
            errors.append(
                f"{key!r}: a name is a lowercase letter, then up to 31 lowercase letters, digits or _."
            )
        elif not isinstance(item, str) or not item or len(item) > ATTRIBUTE_VALUE_MAX_LENGTH:
            errors.append(f"{key}: a value is a string of 1 to {ATTRIBUTE_VALUE_MAX_LENGTH} characters.")
    return errors
