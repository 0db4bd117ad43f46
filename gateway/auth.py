"""Bearer JWT verification (PyJWT), the users table as the authority on identity, and
token minting for local use.

A token is checked in two steps. `TokenVerifier.verify` (every request, the fast path
too) checks the signature, `exp`, `iat`, the lifetime `exp − iat`, and that `sub` is a
user id and `role` a dashboard role. `confirm_identity` (every request that executes,
and every answer a refresh cycle rebuilds) checks the claims against the users table: the
user must exist with the role the token claims. Stored answers are keyed by (role, user
id) and built only for confirmed callers, and each depends on its caller's profile
entry: a refresh of that user drops them, so a demotion or a deletion reaches the fast
path with that refresh.
"""

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import jwt

from gateway.settings import Settings
from resolvers.caller import DASHBOARD_ROLES, Caller
from resolvers.ids import parse_id

ROLES = DASHBOARD_ROLES
# Verified tokens kept until they expire: a signature check costs more than a cached answer.
MAX_CACHED_TOKENS = 20_000


class AuthError(Exception):
    """Why a request is not authenticated (the message is safe to show)."""


class Profiles(Protocol):
    async def identity(self, user_id: int) -> Any: ...


async def confirm_identity(caller: Caller, profiles: Profiles) -> None:
    """Raises AuthError unless the users table holds the caller with the claimed role."""
    row = await profiles.identity(caller.user_id)
    if row is None or row.role not in DASHBOARD_ROLES:
        raise AuthError("The token's user has no dashboard.")
    if row.role != caller.role:
        raise AuthError("The token's role is not the user's role.")


@dataclass(frozen=True)
class TokenVerifier:
    key: Any
    algorithm: str
    audience: str | None
    issuer: str | None
    max_lifetime_s: float = 86_400.0
    _verified: dict[str, tuple[Caller, float]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> "TokenVerifier":
        if settings.jwt_public_key_file is not None:
            return cls(
                settings.jwt_public_key_file.read_text(),
                "RS256",
                settings.jwt_audience,
                settings.jwt_issuer,
                settings.jwt_max_lifetime_s,
            )
        return cls(
            settings.jwt_secret.get_secret_value(),
            "HS256",
            settings.jwt_audience,
            settings.jwt_issuer,
            settings.jwt_max_lifetime_s,
        )

    def verify(self, authorization: str | None) -> Caller:
        # Every request calls this, fast-path hits included: no call more than needed.
        if not authorization:
            raise AuthError("Missing Authorization header.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("Authorization must be `Bearer <token>`.")
        known = self._verified.get(token)
        if known is not None and time.time() < known[1]:
            return known[0]
        return self._remember(token)[0]

    def verify_until(self, authorization: str | None) -> tuple[Caller, float]:
        """The caller and the token's expiry (unix time): a subscription ends then."""
        caller = self.verify(authorization)
        assert authorization is not None  # verify refuses a missing header
        return caller, self._verified[authorization.partition(" ")[2].strip()][1]

    def _remember(self, token: str) -> tuple[Caller, float]:
        caller, expires_at = self._decode(token)
        if len(self._verified) >= MAX_CACHED_TOKENS:
            self._verified.clear()
        self._verified[token] = (caller, expires_at)
        return caller, expires_at

    def _decode(self, token: str) -> tuple[Caller, float]:
        try:
            # One algorithm only: `none` and algorithm confusion are rejected by PyJWT.
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("Token expired.") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"Invalid token: {exc}.") from None
        except jwt.PyJWTError:  # a key PyJWT refuses (settings refuse empty secrets first)
            raise AuthError("Invalid token.") from None
        # PyJWT has checked that exp and iat are integers (floats truncate) and iat is past.
        if claims["exp"] - claims["iat"] > self.max_lifetime_s:
            raise AuthError(
                f"Token lifetime (exp − iat) exceeds {self.max_lifetime_s:.0f} seconds."
            )
        role = claims.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise AuthError("Token `role` must be director or admin.")
        user_id = parse_id(claims["sub"])
        if user_id is None:
            raise AuthError("Token `sub` must be a user id.")
        return Caller(user_id=user_id, role=role), float(claims["exp"])


def mint_token(settings: Settings, user_id: int, role: str, ttl_s: int) -> str:
    if ttl_s > settings.jwt_max_lifetime_s:
        raise ValueError(
            f"a token may live at most GATEWAY_JWT_MAX_LIFETIME_S "
            f"({settings.jwt_max_lifetime_s:.0f} s)"
        )
    now = int(time.time())
    claims: dict[str, Any] = {"sub": str(user_id), "role": role, "iat": now, "exp": now + ttl_s}
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_public_key_file is not None:
        if settings.jwt_private_key_file is None:
            raise ValueError("RS256 tokens need GATEWAY_JWT_PRIVATE_KEY_FILE to mint.")
        return jwt.encode(claims, settings.jwt_private_key_file.read_text(), algorithm="RS256")
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def parse_duration(text: str) -> int:
    """`90s`, `15m`, `1h`, `7d` or plain seconds → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        value = int(text[:-1]) * units[text[-1]] if text[-1:] in units else int(text)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 1h, 7d)") from None
    if value <= 0:
        raise ValueError("duration must be positive")
    return value
