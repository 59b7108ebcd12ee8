"""Personal access tokens: scoped, long-lived bearer tokens for scripts and integrations
(``/v1/users/me/tokens``, and ``/v1/tokens`` for a tenant's ADMINs)."""
