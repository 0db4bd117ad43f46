"""Token verification: verified tokens are remembered, never past their expiry."""

import time

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.auth import AuthError, TokenVerifier
from gateway.settings import Settings
from resolvers.caller import Caller

SECRET = "a-test-secret-of-sufficient-length-0123"


def token(exp: float, **claims) -> str:
    payload = {"sub": "2", "role": "director", "iat": int(time.time()), "exp": exp, **claims}
    return jwt.encode(payload, SECRET, "HS256")


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
    forged = jwt.encode(
        {"sub": "2", "role": "admin", "iat": int(time.time()), "exp": time.time() + 60},
        "other" * 8,
    )
    for _ in range(2):
        with pytest.raises(AuthError, match="Invalid token"):
            verifier.verify(f"Bearer {forged}")


class FromNow(int):
    """A claim's seconds from the moment the test runs (not the moment it was collected:
    a suite on a busy machine may run a test many minutes after its module was imported)."""


def at_run_time(payload: dict) -> dict:
    now_s = int(time.time())
    return {k: now_s + v if isinstance(v, FromNow) else v for k, v in payload.items()}


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"iat": None}, 'Invalid token: Token is missing the "iat" claim.'),
        ({"exp": 1e20}, "Token lifetime (exp − iat) exceeds 86400 seconds."),
        ({"exp": FromNow(86_401)}, "Token lifetime (exp − iat) exceeds 86400 seconds."),
        (
            {"iat": FromNow(3600), "exp": FromNow(7200)},
            "Invalid token: The token is not yet valid (iat).",
        ),
        ({"role": ["admin"]}, "Token `role` must be director or admin."),
        ({"role": {"admin": True}}, "Token `role` must be director or admin."),
        ({"role": "learner"}, "Token `role` must be director or admin."),
        ({"sub": " 2 "}, "Token `sub` must be a user id."),
        ({"sub": "+2"}, "Token `sub` must be a user id."),
        ({"sub": "٢"}, "Token `sub` must be a user id."),
        ({"sub": "2_0"}, "Token `sub` must be a user id."),
        ({"sub": "02"}, "Token `sub` must be a user id."),
        ({"sub": "9" * 30}, "Token `sub` must be a user id."),
        ({"sub": "2147483648"}, "Token `sub` must be a user id."),  # past INTEGER ids
    ],
)
def test_claims_outside_the_rules_are_refused(claims: dict, message: str) -> None:
    verifier = TokenVerifier.from_settings(Settings(jwt_secret=SECRET))
    payload = {"sub": "2", "role": "director", "iat": FromNow(0), "exp": FromNow(3600), **claims}
    payload = at_run_time({k: v for k, v in payload.items() if v is not None})
    with pytest.raises(AuthError) as refused:
        verifier.verify(f"Bearer {jwt.encode(payload, SECRET, 'HS256')}")
    assert str(refused.value) == message


def test_a_token_of_the_longest_lifetime_is_accepted() -> None:
    verifier = TokenVerifier.from_settings(Settings(jwt_secret=SECRET, jwt_max_lifetime_s=600))
    now_s = int(time.time())
    payload = {"sub": "2147483647", "role": "admin", "iat": now_s, "exp": now_s + 600}
    assert verifier.verify(f"Bearer {jwt.encode(payload, SECRET, 'HS256')}") == Caller(
        2147483647, "admin"
    )
    with pytest.raises(AuthError, match="exceeds 600 seconds"):
        verifier.verify(f"Bearer {jwt.encode({**payload, 'exp': now_s + 601}, SECRET, 'HS256')}")


@settings(max_examples=400, derandomize=True, deadline=None)
@given(
    claims=st.dictionaries(
        st.sampled_from(["sub", "role", "exp", "iat", "nbf", "aud", "iss"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=5,
        ),
    )
)
def test_any_claims_are_verified_or_refused_never_crash(claims: dict) -> None:
    """Whatever a signed token carries, the verifier answers with a Caller or an AuthError."""
    verifier = TokenVerifier.from_settings(Settings(jwt_secret=SECRET))
    try:
        encoded = jwt.encode(claims, SECRET, "HS256")
    except (TypeError, ValueError):
        return  # not encodable as JSON: no client can send it either
    try:
        caller = verifier.verify(f"Bearer {encoded}")
    except AuthError:
        return
    assert caller.role in ("director", "admin") and 1 <= caller.user_id <= 2**31 - 1
