"""OIDC single sign-on per tenant: the tenant's settings (``/v1/tenant/sso``) and the
browser sign-in (``/v1/auth/oidc/{tenant}/start`` → the issuer → ``…/callback``)."""
