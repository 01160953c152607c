"""An adopter's manifest that is not the example: acme's Cloudflare token, held by a GitHub
Actions secret of another repository and by an Infisical secret, approved by dana and erin."""

from __future__ import annotations

CREDENTIAL = "ACME_CF_DEPLOY"
APPROVERS = ["dana", "erin"]
HEALTH_URL = "https://deploy.acme.example/healthz"
MANIFEST = f"""\
version: 1
credentials:
  - name: {CREDENTIAL}
    description: Cloudflare token acme's deploys use
    vendor: cloudflare
    env: prod
    schedule: 60d
    vault:
      kind: infisical_secret
      project_id: acme-ops
      environment: prod
      secret_path: /velvet
      name: {CREDENTIAL}
    approvers:
      prod: [{", ".join(APPROVERS)}]
    consumers:
      - consumer_id: gh-acme-site-cloudflare
        kind: github_actions_secret
        repository: acme/site
        secret: CLOUDFLARE_API_TOKEN
        env: prod
        healthcheck: {{type: http, url: "{HEALTH_URL}"}}
      - consumer_id: infisical-acme-deploy
        kind: infisical_secret
        project_id: acme-ops
        environment: prod
        secret_path: /deploy
        name: CLOUDFLARE_API_TOKEN
        env: prod
        healthcheck: {{type: readback}}
"""
