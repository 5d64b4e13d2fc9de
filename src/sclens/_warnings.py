"""sclens's own warning category (tests turn it into an error)."""


class SclensWarning(UserWarning):
    """A warning issued by sclens about the user's data or settings."""
