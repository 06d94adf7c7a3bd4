"""The password rule, after NIST SP 800-63B-4 section 3.1.1.2 (memorized secrets):

- at least 15 characters (the minimum for a password that is the only factor, as here), at most
  1024 (NIST asks that at least 64 be allowed; argon2 takes any length);
- no composition rules (no "one digit, one symbol"): length and guessability decide;
- refused when it is on a list of commonly used, expected or compromised values, including
  dictionary words, repeated or sequential characters and context-specific words such as the
  username. That check is zxcvbn (Dropbox's estimator, maintained on PyPI as ``zxcvbn``): it
  ships frequency lists of common passwords, English words, names and keyboard patterns, and
  estimates the guesses an attacker needs; we require at least 10**8 (zxcvbn's score 3,
  "safely unguessable"), which refuses "aaaaaaaaaaaaaaa", "123456789012345", "qwertyuiopasdfg",
  "passwordpassword" and, for the account clara, "clara1234567890".

zxcvbn reads at most 72 characters (its own limit, which bounds its work); a longer password is
judged by its first 72.
"""

from __future__ import annotations

from zxcvbn import zxcvbn

MIN_PASSWORD_LENGTH = 15
MAX_PASSWORD_LENGTH = 1024
#: Fewest guesses (log10) an attacker must need: zxcvbn's score 3.
MIN_GUESSES_LOG10 = 8
#: zxcvbn's own input limit.
ESTIMATED_CHARACTERS = 72


def encodable(text: str) -> bool:
    """Whether ``text`` can be hashed as UTF-8 (no lone surrogates)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def password_problem(password: str, username: str = "") -> str | None:
    """Why ``password`` is refused for account ``username`` (a sentence naming the rule), or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return (f"must be at least {MIN_PASSWORD_LENGTH} characters (a few unrelated words make a good one; "
                "NIST SP 800-63B)")
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"must be at most {MAX_PASSWORD_LENGTH} characters"
    if not encodable(password):
        return "must be valid text (it holds a lone surrogate)"
    inputs = [username, *username.replace(".", " ").replace("_", " ").replace("-", " ").split()] if username else []
    estimate = zxcvbn(password[:ESTIMATED_CHARACTERS], user_inputs=inputs)
    if estimate["guesses_log10"] < MIN_GUESSES_LOG10:
        warning = estimate["feedback"].get("warning") or "it follows a common pattern"
        return (f"is too easy to guess: {warning.rstrip('.')} (common passwords, words, names, repeats, "
                "sequences and the username are refused; use a longer phrase of unrelated words)")
    return None
