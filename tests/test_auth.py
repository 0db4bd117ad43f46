"""Token verification: verified tokens are remembered, never past their expiry."""

import time

import jwt
import pytest

from gateway.auth import AuthError, TokenVerifier
from gateway.settings import Settings
from resolvers.caller import Caller

SECRET = "a-test-secret-of-sufficient-length-0123"


def token(exp: float, **claims) -> str:
    return jwt.encode({"sub": "2", "role": "director", "exp": exp, **claims}, SECRET, "HS256")


def test_a_remembered_token_still_expires() -> None:
    verifier = TokenVerifier.from_settings(Settings(jwt_secret=SECRET))
    # A whole second (PyJWT compares `exp` as an integer) 2 to 3 s away: the two checks
    # below take far less, however loaded the machine.
    expires_at = int(time.time()) + 3
    short = token(expires_at)
    assert verifier.verify(f"Bearer {short}") == Caller(user_id=2, role="director")
    assert verifier.verify(f"Bearer {short}") == Caller(user_id=2, role="director")
    while time.time() < expires_at:  # the expiry itself, whenever the checks ended
        time.sleep(max(0.0, expires_at - time.time()))
    with pytest.raises(AuthError, match="Token expired."):
        verifier.verify(f"Bearer {short}")


def test_a_bad_token_is_never_remembered() -> None:
    verifier = TokenVerifier.from_settings(Settings(jwt_secret=SECRET))
    forged = jwt.encode({"sub": "2", "role": "admin", "exp": time.time() + 60}, "other" * 8)
    for _ in range(2):
        with pytest.raises(AuthError, match="Invalid token"):
            verifier.verify(f"Bearer {forged}")
