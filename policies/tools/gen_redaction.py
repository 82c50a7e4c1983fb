#!/usr/bin/env python3
"""Generates policies/default/redaction.toml from the rule table below.

Each rule's examples are built from templates with synthetic (random, seeded) tokens of exactly
the lengths the real formats have, so every example is a true positive by construction and no
real credential is ever committed. Counter-examples are near misses that must stay unchanged.

    python3 policies/tools/gen_redaction.py > policies/default/redaction.toml
"""
import random, re, string, uuid

rnd = random.Random(20261121)
A = string.ascii_letters + string.digits
def alnum(n): return "".join(rnd.choice(A) for _ in range(n))
def lower(n): return "".join(rnd.choice(string.ascii_lowercase + string.digits) for _ in range(n))
def upper(n): return "".join(rnd.choice(string.ascii_uppercase + string.digits) for _ in range(n))
def hexl(n): return "".join(rnd.choice("0123456789abcdef") for _ in range(n))
def hexu(n): return "".join(rnd.choice("0123456789ABCDEF") for _ in range(n))
def b64(n): return "".join(rnd.choice(A + "+/") for _ in range(n))
def url64(n): return "".join(rnd.choice(A + "-_") for _ in range(n))
def uid(): return str(uuid.UUID(int=rnd.getrandbits(128), version=4))

# id, description, regex, secret_group, examples, counter_examples
RULES = []
def rule(id, desc, regex, group, examples, counters=()):
    RULES.append((id, desc, regex, group, list(examples), list(counters)))

# --- cloud providers ---------------------------------------------------------------------
rule("aws-access-key-id", "AWS access key ID",
     r"\b((?:AKIA|ASIA|ABIA|ACCA|AROA|AIDA|AIPA|ANPA|ANVA|AGPA)[A-Z2-7]{16})\b", 1,
     [f"aws_access_key_id = AKIA{upper(16).replace('0','Q').replace('1','R').replace('8','S').replace('9','T')}",
      f"export AWS_ACCESS_KEY_ID=ASIA{''.join(rnd.choice('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567') for _ in range(16))}"],
     ["AKIAIOSFODNN7 is too short", "the word AKIA alone"])
rule("aws-secret-access-key", "AWS secret access key",
     r"(?i)aws[_-]?secret[_-]?(?:access[_-]?)?key[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{40})\b", 1,
     [f"aws_secret_access_key = {b64(40)}", f'"AWS_SECRET_KEY": "{b64(40)}"'],
     ["aws_secret_access_key = <your key here>"])
rule("aws-session-token", "AWS session token",
     r"(?i)aws[_-]?session[_-]?token[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{100,})", 1,
     [f"AWS_SESSION_TOKEN={b64(180)}"], ["AWS_SESSION_TOKEN=short"])
rule("gcp-api-key", "Google API key",
     r"\b(AIza[0-9A-Za-z_-]{35})\b", 1,
     [f"key=AIza{url64(35)}", f"GOOGLE_API_KEY=AIza{url64(35)}"], ["AIza is a prefix", "AIzaShort123"])
rule("gcp-oauth-client-secret", "Google OAuth client secret",
     r"\b(GOCSPX-[A-Za-z0-9_-]{28})\b", 1, [f"client_secret: GOCSPX-{url64(28)}"], ["GOCSPX-short"])
rule("gcp-service-account-key", "Google service account private key id",
     r"\"private_key_id\"\s*:\s*\"([a-f0-9]{40})\"", 1, [f'"private_key_id": "{hexl(40)}"'], ['"private_key_id": ""'])
rule("google-oauth-refresh-token", "Google OAuth refresh token",
     r"\b(1//0[A-Za-z0-9_-]{40,})", 1, [f"refresh_token=1//0{url64(60)}"], ["1//0short"])
rule("google-oauth-access-token", "Google OAuth access token",
     r"\b(ya29\.[A-Za-z0-9_-]{30,})", 1, [f"Authorization: Bearer ya29.{url64(80)}"], ["ya29.short"])
rule("azure-storage-key", "Azure storage account key in a connection string",
     r"(?i)AccountKey=([A-Za-z0-9+/]{86}==)", 1,
     [f"DefaultEndpointsProtocol=https;AccountName=shop;AccountKey={b64(86)}==;EndpointSuffix=core.windows.net"],
     ["AccountKey=;"])
rule("azure-sas-token", "Azure shared access signature",
     r"(?i)[?&]sig=([A-Za-z0-9%+/=]{40,})", 1, [f"https://x.blob.core.windows.net/c?sv=2022-11-02&sig={b64(44)}"], ["?sig=abc"])
rule("azure-ad-client-secret", "Azure AD client secret",
     r"\b([A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34})\b", 1, [f"AZURE_CLIENT_SECRET={alnum(3)}8Q~{alnum(34)}"], ["8Q~ alone"])
rule("digitalocean-token", "DigitalOcean API token",
     r"\b(do[opr]_v1_[a-f0-9]{64})\b", 1, [f"DIGITALOCEAN_TOKEN=dop_v1_{hexl(64)}", f"doo_v1_{hexl(64)}"], ["dop_v1_1234"])
rule("hetzner-cloud-token", "Hetzner Cloud API token",
     r"(?i)(?:hcloud|hetzner)[a-z0-9_]*(?:token|key)[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9]{64})\b", 1,
     [f"HCLOUD_TOKEN={alnum(64)}"], ["HCLOUD_TOKEN=changeme"])
rule("linode-token", "Linode personal access token",
     r"(?i)linode[a-z0-9_]*(?:token|key)[\"']?\s*[:=]\s*[\"']?([a-f0-9]{64})\b", 1, [f"LINODE_TOKEN={hexl(64)}"], [])
rule("alibaba-access-key-id", "Alibaba Cloud AccessKey ID",
     r"\b(LTAI[A-Za-z0-9]{20})\b", 1, [f"access_key_id: LTAI{alnum(20)}"], ["LTAI123"])
rule("cloudflare-api-token", "Cloudflare API token",
     r"(?i)(?:cloudflare[a-z0-9_]*(?:api)?[_-]?|\bcf[_-](?:api[_-]?)?)(?:token|key)[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9_-]{40})\b", 1,
     [f"CLOUDFLARE_API_TOKEN={url64(40)}", f"CF_API_KEY={url64(40)}"], ["CF_API_KEY=none"])
rule("cloudflare-origin-ca-key", "Cloudflare Origin CA key",
     r"\b(v1\.0-[a-f0-9]{24}-[a-f0-9]{146})\b", 1, [f"v1.0-{hexl(24)}-{hexl(146)}"], ["v1.0-abc"])
rule("scaleway-secret-key", "Scaleway secret key",
     r"(?i)scw[a-z0-9_]*secret[a-z0-9_]*[\"']?\s*[:=]\s*[\"']?([a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})", 1,
     [f"SCW_SECRET_KEY={uid()}"], [])
rule("fly-io-token", "Fly.io access token",
     r"\b(FlyV1 fm[12]_[A-Za-z0-9+/=_,-]{100,})", 1, [f"FLY_API_TOKEN=FlyV1 fm2_{b64(180)}"], ["FlyV1 fm2_short"])
rule("render-api-key", "Render API key", r"\b(rnd_[A-Za-z0-9]{32})\b", 1, [f"RENDER_API_KEY=rnd_{alnum(32)}"], ["rnd_abc"])
rule("vercel-token", "Vercel access token",
     r"(?i)vercel[a-z0-9_]*token[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9]{24})\b", 1, [f"VERCEL_TOKEN={alnum(24)}"], [])
rule("netlify-token", "Netlify access token", r"\b(nfp_[A-Za-z0-9]{36})\b", 1, [f"NETLIFY_AUTH_TOKEN=nfp_{alnum(36)}"], ["nfp_x"])
rule("supabase-token", "Supabase access token", r"\b(sbp_[a-f0-9]{40})\b", 1, [f"SUPABASE_ACCESS_TOKEN=sbp_{hexl(40)}"], ["sbp_1"])
rule("planetscale-token", "PlanetScale password or token",
     r"\b(pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_.-]{32,64})\b", 1, [f"pscale_pw_{url64(43)}"], ["pscale_pw_x"])
rule("databricks-token", "Databricks API token", r"\b(dapi[a-f0-9]{32}(?:-\d)?)\b", 1, [f"DATABRICKS_TOKEN=dapi{hexl(32)}"], ["dapi123"])
rule("doppler-token", "Doppler API token", r"\b(dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44})\b", 1, [f"dp.pt.{alnum(43)}"], ["dp.pt.short"])
rule("pulumi-token", "Pulumi access token", r"\b(pul-[a-f0-9]{40})\b", 1, [f"PULUMI_ACCESS_TOKEN=pul-{hexl(40)}"], ["pul-1234"])
rule("terraform-cloud-token", "Terraform Cloud token", r"\b([a-z0-9]{14}\.atlasv1\.[a-z0-9_=-]{60,70})\b", 1, [f"{lower(14)}.atlasv1.{lower(67)}"], [])
rule("hashicorp-vault-token", "HashiCorp Vault token", r"\b(hv[sbr]\.[A-Za-z0-9_-]{24,})\b", 1, [f"VAULT_TOKEN=hvs.{url64(90)}"], ["hvs.short"])

# --- source hosting and CI ---------------------------------------------------------------
rule("github-pat", "GitHub personal access token (classic)", r"\b(ghp_[A-Za-z0-9]{36})\b", 1, [f"GITHUB_TOKEN=ghp_{alnum(36)}"], ["ghp_shorttoken123"])
rule("github-fine-grained-pat", "GitHub fine-grained personal access token", r"\b(github_pat_[A-Za-z0-9_]{82})\b", 1, [f"github_pat_{alnum(22)}_{alnum(59)}"], ["github_pat_abc"])
rule("github-oauth", "GitHub OAuth access token", r"\b(gho_[A-Za-z0-9]{36})\b", 1, [f"gho_{alnum(36)}"], ["gho_1"])
rule("github-app-token", "GitHub app installation or user token", r"\b(gh[us]_[A-Za-z0-9]{36})\b", 1, [f"ghs_{alnum(36)}", f"ghu_{alnum(36)}"], ["ghs_1"])
rule("github-refresh-token", "GitHub refresh token", r"\b(ghr_[A-Za-z0-9]{36,76})\b", 1, [f"ghr_{alnum(76)}"], ["ghr_1"])
rule("gitlab-pat", "GitLab personal access token", r"\b(glpat-[A-Za-z0-9_-]{20,})\b", 1, [f"GITLAB_TOKEN=glpat-{url64(20)}"], ["glpat-short"])
rule("gitlab-pipeline-token", "GitLab pipeline trigger token", r"\b(glptt-[a-f0-9]{40})\b", 1, [f"glptt-{hexl(40)}"], ["glptt-1"])
rule("gitlab-runner-token", "GitLab runner registration token", r"\b(GR1348941[A-Za-z0-9_-]{20})\b", 1, [f"GR1348941{url64(20)}"], ["GR1348941x"])
rule("gitlab-deploy-token", "GitLab deploy token", r"\b(gldt-[A-Za-z0-9_-]{20})\b", 1, [f"gldt-{url64(20)}"], ["gldt-1"])
rule("bitbucket-app-password", "Bitbucket app password", r"\b(ATBB[A-Za-z0-9_=.-]{28,})\b", 1, [f"ATBB{alnum(32)}"], ["ATBB12"])
rule("atlassian-api-token", "Atlassian API token", r"\b(ATATT3[A-Za-z0-9_=+/-]{180,})", 1, [f"JIRA_API_TOKEN=ATATT3{url64(186)}"], ["ATATT3short"])
rule("npm-token", "npm access token", r"\b(npm_[A-Za-z0-9]{36})\b", 1, [f"//registry.npmjs.org/:_authToken=npm_{alnum(36)}"], ["npm_install"])
rule("pypi-token", "PyPI upload token", r"\b(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,})", 1, [f"password = pypi-AgEIcHlwaS5vcmc{url64(120)}"], ["pypi-AgEI"])
rule("rubygems-key", "RubyGems API key", r"\b(rubygems_[a-f0-9]{48})\b", 1, [f"rubygems_{hexl(48)}"], ["rubygems_1"])
rule("nuget-key", "NuGet API key", r"\b(oy2[a-z0-9]{43})\b", 1, [f"oy2{lower(43)}"], ["oy2abc"])
rule("docker-hub-pat", "Docker Hub personal access token", r"\b(dckr_pat_[A-Za-z0-9_-]{27})\b", 1, [f"dckr_pat_{url64(27)}"], ["dckr_pat_x"])
rule("circleci-token", "CircleCI personal token", r"\b(CCIPAT_[A-Za-z0-9]{22}_[a-f0-9]{40})\b", 1, [f"CCIPAT_{alnum(22)}_{hexl(40)}"], [])
rule("sonarqube-token", "SonarQube token", r"\b(sq[uap]_[a-f0-9]{40})\b", 1, [f"SONAR_TOKEN=squ_{hexl(40)}"], ["squ_1"])
rule("snyk-token", "Snyk API token", r"(?i)snyk[a-z0-9_]*(?:token|key)[\"']?\s*[:=]\s*[\"']?([a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})", 1, [f"SNYK_TOKEN={uid()}"], [])
rule("sentry-token", "Sentry auth token", r"\b(sntry[su]_[A-Za-z0-9+/=_]{60,})", 1, [f"SENTRY_AUTH_TOKEN=sntrys_{b64(100)}"], ["sntrys_x"])
rule("sentry-dsn", "Sentry DSN key", r"https://([a-f0-9]{32})@[a-z0-9.]*sentry\.io/", 1, [f"SENTRY_DSN=https://{hexl(32)}@o123.ingest.sentry.io/456"], ["https://sentry.io/"])
rule("grafana-token", "Grafana service account or cloud token", r"\b(gl(?:sa|c)_[A-Za-z0-9_+/=-]{32,})", 1, [f"glsa_{alnum(32)}_{hexl(8)}", f"glc_{b64(80)}"], ["glc_x"])
rule("new-relic-key", "New Relic API key", r"\b(NRAK-[A-Z0-9]{27})\b", 1, [f"NEW_RELIC_API_KEY=NRAK-{upper(27)}"], ["NRAK-1"])
rule("datadog-api-key", "Datadog API key", r"(?i)(?:datadog|dd)[_-]?(?:api|app)[_-]?key[\"']?\s*[:=]\s*[\"']?([a-f0-9]{32,40})\b", 1, [f"DD_API_KEY={hexl(32)}", f"DATADOG_APP_KEY={hexl(40)}"], [])
rule("prefect-token", "Prefect API key", r"\b(pnu_[A-Za-z0-9]{36})\b", 1, [f"PREFECT_API_KEY=pnu_{alnum(36)}"], ["pnu_1"])
rule("dynatrace-token", "Dynatrace API token", r"\b(dt0c01\.[A-Z0-9]{24}\.[A-Z0-9]{64})\b", 1, [f"dt0c01.{upper(24)}.{upper(64)}"], [])
rule("postman-key", "Postman API key", r"\b(PMAK-[a-f0-9]{24}-[a-f0-9]{34})\b", 1, [f"PMAK-{hexl(24)}-{hexl(34)}"], ["PMAK-1"])
rule("readme-key", "ReadMe API key", r"\b(rdme_[a-z0-9]{70})\b", 1, [f"rdme_{lower(70)}"], ["rdme_1"])
rule("infracost-key", "Infracost API key", r"\b(ico-[A-Za-z0-9]{32})\b", 1, [f"INFRACOST_API_KEY=ico-{alnum(32)}"], ["ico-1"])

# --- communication -----------------------------------------------------------------------
rule("slack-bot-token", "Slack bot, user or app token", r"\b(xox[baprs]-[0-9]{8,13}-[0-9]{8,13}(?:-[0-9]{8,13})?-[A-Za-z0-9]{24,34})\b", 1,
     [f"SLACK_BOT_TOKEN=xoxb-{rnd.randint(10**11,10**12)}-{rnd.randint(10**11,10**12)}-{alnum(24)}",
      f"xoxp-{rnd.randint(10**11,10**12)}-{rnd.randint(10**11,10**12)}-{rnd.randint(10**11,10**12)}-{alnum(32)}"], ["xoxb-123"])
rule("slack-app-token", "Slack app-level token", r"\b(xapp-\d-[A-Z0-9]+-\d+-[a-f0-9]{64})\b", 1, [f"xapp-1-A{upper(10)}-{rnd.randint(10**12,10**13)}-{hexl(64)}"], ["xapp-1"])
rule("slack-webhook", "Slack incoming webhook", r"https://hooks\.slack\.com/(?:services|workflows|triggers)/([A-Za-z0-9+/_]{20,})", 1,
     [f"https://hooks.slack.com/services/T{upper(8)}/B{upper(10)}/{alnum(24)}"], ["https://hooks.slack.com/services/"])
rule("discord-bot-token", "Discord bot token", r"\b([MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38})\b", 1, [f"DISCORD_TOKEN=M{url64(23)}.{url64(6)}.{url64(38)}"], [])
rule("discord-webhook", "Discord webhook", r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/([A-Za-z0-9_-]{60,70})", 1, [f"https://discord.com/api/webhooks/{rnd.randint(10**17,10**18)}/{url64(68)}"], [])
rule("telegram-bot-token", "Telegram bot token", r"\b(\d{8,10}:AA[A-Za-z0-9_-]{33})\b", 1, [f"TELEGRAM_BOT_TOKEN={rnd.randint(10**8,10**9)}:AA{url64(33)}"], ["12345678:AAshort"])
rule("twilio-api-key", "Twilio API key", r"\b(SK[a-f0-9]{32})\b", 1, [f"TWILIO_API_KEY=SK{hexl(32)}"], ["SKabc"])
rule("twilio-auth-token", "Twilio auth token", r"(?i)twilio[a-z0-9_]*(?:auth)?[_-]?token[\"']?\s*[:=]\s*[\"']?([a-f0-9]{32})\b", 1, [f"TWILIO_AUTH_TOKEN={hexl(32)}"], [])
rule("sendgrid-key", "SendGrid API key", r"\b(SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})\b", 1, [f"SENDGRID_API_KEY=SG.{url64(22)}.{url64(43)}"], ["SG.short.key"])
rule("mailgun-key", "Mailgun API key", r"\b(key-[a-f0-9]{32})\b", 1, [f"MAILGUN_API_KEY=key-{hexl(32)}"], ["key-value pairs"])
rule("mailgun-signing-key", "Mailgun webhook signing key", r"(?i)mailgun[a-z0-9_]*(?:signing)?[_-]?key[\"']?\s*[:=]\s*[\"']?([a-f0-9]{32}-[a-f0-9]{8}-[a-f0-9]{8})\b", 1, [f"MAILGUN_SIGNING_KEY={hexl(32)}-{hexl(8)}-{hexl(8)}"], [])
rule("mailchimp-key", "Mailchimp API key", r"\b([a-f0-9]{32}-us\d{1,2})\b", 1, [f"MAILCHIMP_API_KEY={hexl(32)}-us21"], ["abc-us1"])
rule("brevo-key", "Brevo (Sendinblue) API key", r"\b(xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16})\b", 1, [f"xkeysib-{hexl(64)}-{alnum(16)}"], ["xkeysib-1"])
rule("postmark-token", "Postmark server token", r"(?i)postmark[a-z0-9_]*(?:token|key)[\"']?\s*[:=]\s*[\"']?([a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})", 1, [f"POSTMARK_SERVER_TOKEN={uid()}"], [])
rule("resend-key", "Resend API key", r"\b(re_[A-Za-z0-9]{8}_[A-Za-z0-9]{24})\b", 1, [f"RESEND_API_KEY=re_{alnum(8)}_{alnum(24)}"], ["re_abc"])
rule("messagebird-key", "MessageBird API key", r"(?i)messagebird[a-z0-9_]*key[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9]{25})\b", 1, [f"MESSAGEBIRD_ACCESS_KEY={alnum(25)}"], [])
rule("vonage-secret", "Vonage (Nexmo) API secret", r"(?i)(?:vonage|nexmo)[a-z0-9_]*secret[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9]{16})\b", 1, [f"NEXMO_API_SECRET={alnum(16)}"], [])
rule("intercom-token", "Intercom access token", r"\b(dG9rOj[A-Za-z0-9_=-]{50,})", 1, [f"INTERCOM_TOKEN=dG9rOj{url64(54)}"], [])
rule("zendesk-token", "Zendesk API token", r"(?i)zendesk[a-z0-9_]*token[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9]{40})\b", 1, [f"ZENDESK_API_TOKEN={alnum(40)}"], [])
rule("mattermost-token", "Mattermost access token", r"(?i)mattermost[a-z0-9_]*token[\"']?\s*[:=]\s*[\"']?([a-z0-9]{26})\b", 1, [f"MATTERMOST_TOKEN={lower(26)}"], [])
rule("teams-webhook", "Microsoft Teams webhook", r"https://[a-z0-9-]+\.webhook\.office\.com/webhookb2/([A-Za-z0-9@/-]{60,})", 1, [f"https://acme.webhook.office.com/webhookb2/{uid()}@{uid()}/IncomingWebhook/{hexl(32)}/{uid()}"], [])

# --- payments and commerce ---------------------------------------------------------------
rule("stripe-secret-key", "Stripe secret key", r"\b(sk_(?:live|test)_[A-Za-z0-9]{24,99})\b", 1, [f"STRIPE_SECRET_KEY=sk_live_{alnum(99)}", f"sk_test_{alnum(24)}"], ["sk_live_short", "sk_test_"])
rule("stripe-restricted-key", "Stripe restricted key", r"\b(rk_(?:live|test)_[A-Za-z0-9]{24,99})\b", 1, [f"rk_live_{alnum(99)}"], ["rk_live_x"])
rule("stripe-webhook-secret", "Stripe webhook signing secret", r"\b(whsec_[A-Za-z0-9]{32,})\b", 1, [f"STRIPE_WEBHOOK_SECRET=whsec_{alnum(32)}"], ["whsec_x"])
rule("paypal-braintree-token", "PayPal Braintree access token", r"\b(access_token\$(?:production|sandbox)\$[a-z0-9]{16}\$[a-f0-9]{32})\b", 1, [f"access_token$production${lower(16)}${hexl(32)}"], [])
rule("square-token", "Square access token", r"\b((?:EAAA|sq0atp-)[A-Za-z0-9_-]{22,60})\b", 1, [f"SQUARE_ACCESS_TOKEN=EAAA{url64(60)}"], ["EAAAbc"])
rule("square-secret", "Square OAuth secret", r"\b(sq0csp-[A-Za-z0-9_-]{43})\b", 1, [f"sq0csp-{url64(43)}"], ["sq0csp-1"])
rule("shopify-token", "Shopify access token", r"\b(shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})\b", 1, [f"SHOPIFY_ACCESS_TOKEN=shpat_{hexl(32)}"], ["shpat_1"])
rule("woocommerce-key", "WooCommerce REST key", r"\b(c[ks]_[a-f0-9]{40})\b", 1, [f"WC_CONSUMER_SECRET=cs_{hexl(40)}"], ["cs_1"])
rule("mollie-key", "Mollie API key", r"\b((?:live|test)_[A-Za-z0-9]{30})\b", 1, [f"MOLLIE_API_KEY=live_{alnum(30)}"], ["live_stream"])
rule("adyen-key", "Adyen API key", r"\b(AQE[A-Za-z0-9+/=_-]{80,})", 1, [f"ADYEN_API_KEY=AQE{b64(100)}"], [])
rule("flutterwave-key", "Flutterwave secret key", r"\b(FLWSECK(?:_TEST)?-[a-f0-9]{32}-X)\b", 1, [f"FLWSECK_TEST-{hexl(32)}-X"], [])
rule("plaid-token", "Plaid access token", r"\b(access-(?:sandbox|development|production)-[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})\b", 1, [f"access-production-{uid()}"], [])
rule("coinbase-key", "Coinbase API secret", r"(?i)coinbase[a-z0-9_]*secret[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9+/=]{40,})", 1, [f"COINBASE_API_SECRET={b64(88)}"], [])
rule("easypost-key", "EasyPost API key", r"\b(EZ[AT]K[a-zA-Z0-9]{54})\b", 1, [f"EZAK{alnum(54)}"], ["EZAK1"])
rule("shippo-token", "Shippo API token", r"\b(shippo_(?:live|test)_[a-f0-9]{40})\b", 1, [f"shippo_live_{hexl(40)}"], ["shippo_live_"])
rule("lemonsqueezy-key", "Lemon Squeezy API key", r"(?i)lemon[_-]?squeezy[a-z0-9_]*key[\"']?\s*[:=]\s*[\"']?(eyJ[A-Za-z0-9_.-]{100,})", 1, [f"LEMONSQUEEZY_API_KEY=eyJ{url64(160)}"], [])

# --- AI providers ------------------------------------------------------------------------
rule("openai-key", "OpenAI API key", r"\b(sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,200})", 1, [f"OPENAI_API_KEY=sk-proj-{url64(156)}", f"sk-svcacct-{url64(74)}"], ["sk-proj-short"])
rule("openai-legacy-key", "OpenAI API key (legacy format)", r"\b(sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})\b", 1, [f"sk-{alnum(20)}T3BlbkFJ{alnum(20)}"], ["sk-T3BlbkFJ"])
rule("anthropic-key", "Anthropic API key", r"\b(sk-ant-(?:api03|admin01|oat01)-[A-Za-z0-9_-]{80,100}AA)", 1, [f"ANTHROPIC_API_KEY=sk-ant-api03-{url64(93)}AA", f"sk-ant-admin01-{url64(93)}AA"], ["sk-ant-api03-short"])
rule("huggingface-token", "Hugging Face token", r"\b(hf_[A-Za-z]{34})\b", 1, [f"HF_TOKEN=hf_{''.join(rnd.choice(string.ascii_letters) for _ in range(34))}"], ["hf_hub"])
rule("replicate-token", "Replicate API token", r"\b(r8_[A-Za-z0-9]{37})\b", 1, [f"REPLICATE_API_TOKEN=r8_{alnum(37)}"], ["r8_1"])
rule("groq-key", "Groq API key", r"\b(gsk_[A-Za-z0-9]{52})\b", 1, [f"GROQ_API_KEY=gsk_{alnum(52)}"], ["gsk_1"])
rule("openrouter-key", "OpenRouter API key", r"\b(sk-or-v1-[a-f0-9]{64})\b", 1, [f"OPENROUTER_API_KEY=sk-or-v1-{hexl(64)}"], ["sk-or-v1-1"])
rule("perplexity-key", "Perplexity API key", r"\b(pplx-[A-Za-z0-9]{48})\b", 1, [f"PERPLEXITY_API_KEY=pplx-{alnum(48)}"], ["pplx-1"])
rule("xai-key", "xAI API key", r"\b(xai-[A-Za-z0-9]{80})\b", 1, [f"XAI_API_KEY=xai-{alnum(80)}"], ["xai-1"])
rule("fireworks-key", "Fireworks AI API key", r"\b(fw_[A-Za-z0-9]{24})\b", 1, [f"FIREWORKS_API_KEY=fw_{alnum(24)}"], ["fw_1"])
rule("mistral-key", "Mistral API key", r"(?i)mistral[a-z0-9_]*key[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9]{32})\b", 1, [f"MISTRAL_API_KEY={alnum(32)}"], [])
rule("cohere-key", "Cohere API key", r"(?i)(?:cohere|co)[_-]?api[_-]?key[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9]{40})\b", 1, [f"COHERE_API_KEY={alnum(40)}"], [])
rule("elevenlabs-key", "ElevenLabs API key", r"\b(sk_[a-f0-9]{48})\b", 1, [f"ELEVENLABS_API_KEY=sk_{hexl(48)}"], ["sk_1"])
rule("deepseek-key", "DeepSeek API key", r"(?i)deepseek[a-z0-9_]*key[\"']?\s*[:=]\s*[\"']?(sk-[a-f0-9]{32})\b", 1, [f"DEEPSEEK_API_KEY=sk-{hexl(32)}"], [])
rule("langsmith-key", "LangSmith API key", r"\b(lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10})\b", 1, [f"LANGSMITH_API_KEY=lsv2_pt_{hexl(32)}_{hexl(10)}"], ["lsv2_pt_1"])

# --- productivity and SaaS ---------------------------------------------------------------
rule("notion-token", "Notion integration token", r"\b((?:secret_[A-Za-z0-9]{43}|ntn_[0-9]{11}[A-Za-z0-9]{35}))\b", 1, [f"NOTION_TOKEN=secret_{alnum(43)}", f"ntn_{rnd.randint(10**10,10**11)}{alnum(35)}"], ["secret_sauce"])
rule("linear-key", "Linear API key", r"\b(lin_api_[A-Za-z0-9]{40})\b", 1, [f"LINEAR_API_KEY=lin_api_{alnum(40)}"], ["lin_api_1"])
rule("airtable-pat", "Airtable personal access token", r"\b(pat[A-Za-z0-9]{14}\.[a-f0-9]{64})\b", 1, [f"AIRTABLE_API_KEY=pat{alnum(14)}.{hexl(64)}"], [])
rule("hubspot-token", "HubSpot private app token", r"\b(pat-(?:na|eu)\d-[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})\b", 1, [f"HUBSPOT_TOKEN=pat-na1-{uid()}"], ["pat-na1-x"])
rule("asana-token", "Asana personal access token", r"(?i)asana[a-z0-9_]*(?:token|pat|key)[\"']?\s*[:=]\s*[\"']?([0-9]/[0-9]{16}:[a-f0-9]{32})\b", 1, [f"ASANA_PAT=1/{rnd.randint(10**15,10**16)}:{hexl(32)}"], [])
rule("dropbox-token", "Dropbox access token", r"\b(sl\.[A-Za-z0-9_-]{130,})", 1, [f"DROPBOX_TOKEN=sl.{url64(140)}"], ["sl.short"])
rule("figma-token", "Figma personal access token", r"\b(figd_[A-Za-z0-9_-]{40,})", 1, [f"FIGMA_TOKEN=figd_{url64(40)}"], ["figd_1"])
rule("typeform-token", "Typeform personal token", r"\b(tfp_[A-Za-z0-9_-]{44}_[A-Za-z0-9_-]{14})\b", 1, [f"tfp_{url64(44)}_{url64(14)}"], ["tfp_1"])
rule("contentful-token", "Contentful personal access token", r"\b(CFPAT-[A-Za-z0-9_-]{43})\b", 1, [f"CFPAT-{url64(43)}"], ["CFPAT-1"])
rule("okta-token", "Okta API token", r"(?i)okta[a-z0-9_]*(?:token|key)[\"']?\s*[:=]\s*[\"']?(00[A-Za-z0-9_-]{40})\b", 1, [f"OKTA_API_TOKEN=00{url64(40)}"], [])
rule("auth0-secret", "Auth0 client secret", r"(?i)auth0[a-z0-9_]*secret[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9_-]{64})\b", 1, [f"AUTH0_CLIENT_SECRET={url64(64)}"], [])
rule("algolia-key", "Algolia admin key", r"(?i)algolia[a-z0-9_]*(?:admin|api|write)[_-]?key[\"']?\s*[:=]\s*[\"']?([a-f0-9]{32})\b", 1, [f"ALGOLIA_ADMIN_KEY={hexl(32)}"], [])
rule("mapbox-token", "Mapbox secret token", r"\b(sk\.eyJ[A-Za-z0-9_-]{60,}\.[A-Za-z0-9_-]{22})\b", 1, [f"MAPBOX_TOKEN=sk.eyJ{url64(80)}.{url64(22)}"], ["sk.eyJ"])
rule("1password-service-token", "1Password service account token", r"\b(ops_eyJ[A-Za-z0-9+/=_-]{250,})", 1, [f"OP_SERVICE_ACCOUNT_TOKEN=ops_eyJ{b64(300)}"], ["ops_eyJ"])
rule("age-secret-key", "age encryption secret key", r"\b(AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})\b", 1, [f"AGE-SECRET-KEY-1{''.join(rnd.choice('QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L') for _ in range(58))}"], ["AGE-SECRET-KEY-1"])
rule("tailscale-key", "Tailscale auth or API key", r"\b(tskey-(?:auth|api|client|scim|webhook)-[A-Za-z0-9]{10,}-[A-Za-z0-9]{20,})\b", 1, [f"TS_AUTHKEY=tskey-auth-{alnum(17)}-{alnum(33)}"], ["tskey-auth-x"])
rule("ngrok-token", "ngrok auth token", r"(?i)ngrok[a-z0-9_]*token[\"']?\s*[:=]\s*[\"']?([0-9A-Za-z]{27}_[0-9A-Za-z]{21})\b", 1, [f"NGROK_AUTHTOKEN={alnum(27)}_{alnum(21)}"], [])
rule("wordpress-auth-key", "WordPress authentication key or salt",
     r"define\(\s*['\"](?:AUTH|SECURE_AUTH|LOGGED_IN|NONCE)_(?:KEY|SALT)['\"]\s*,\s*['\"]([^'\"\s]{32,})['\"]", 1,
     [f"define( 'AUTH_KEY', '{b64(64)}' );"], ["define( 'AUTH_KEY', 'put your unique phrase here' );"])
rule("wordpress-db-password", "WordPress database password",
     r"define\(\s*['\"]DB_PASSWORD['\"]\s*,\s*['\"]([^'\"]{4,})['\"]", 1,
     [f"define( 'DB_PASSWORD', '{alnum(12)}' );"], ["define( 'DB_PASSWORD', '' );"])
rule("nextcloud-config-secret", "Nextcloud config secret, salt or password",
     r"['\"](?:secret|passwordsalt|dbpassword|mail_smtppassword)['\"]\s*=>\s*['\"]([^'\"]{8,})['\"]", 1,
     [f"  'passwordsalt' => '{alnum(30)}',", f"  'dbpassword' => '{alnum(16)}',"], ["  'dbpassword' => '',"])

# --- generic formats ---------------------------------------------------------------------
rule("private-key", "PEM or OpenSSH private key block",
     r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----[\s\S]{16,}?-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----", None,
     ["-----BEGIN RSA PRIVATE KEY-----\n" + b64(64) + "\n" + b64(64) + "\n-----END RSA PRIVATE KEY-----",
      "-----BEGIN OPENSSH PRIVATE KEY-----\n" + b64(70) + "\n-----END OPENSSH PRIVATE KEY-----",
      "-----BEGIN EC PRIVATE KEY-----\\n" + b64(64) + "\\n-----END EC PRIVATE KEY-----",
      "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n" + b64(64) + "\n-----END PGP PRIVATE KEY BLOCK-----",
      "-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + b64(64) + "\n-----END ENCRYPTED PRIVATE KEY-----",
      "-----BEGIN PRIVATE KEY-----\n" + b64(64) + "\n-----END PRIVATE KEY-----"],
     ["-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"])
rule("putty-key", "PuTTY private key", r"(PuTTY-User-Key-File-\d: [\s\S]{16,}?Private-MAC: [a-f0-9]{40,64})", 1,
     ["PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nPrivate-Lines: 1\n" + b64(44) + "\nPrivate-MAC: " + hexl(64)], [])
rule("jwt", "JSON Web Token", r"\b(eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})", 1,
     [f"Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ{url64(60)}.{url64(43)}"], ["eyJhbGciOi only"])
rule("url-password", "password in a URL",
     r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^\s:/@\"'()\[\]]{1,64}:([^\s:/@\"'()\[\]]{3,128})@[A-Za-z0-9.-]+", 1,
     [f"DATABASE_URL=postgres://shop:{alnum(18)}@db.internal:5432/shop", f"redis://default:{alnum(24)}@cache:6379/0",
      f"https://deploy:{alnum(20)}@git.example.com/acme/shop.git", f"mongodb+srv://admin:{alnum(16)}@cluster0.abcde.mongodb.net/"],
     ["https://example.com/path", "postgres://localhost:5432/shop", "user@example.com", "https://user@example.com/x"])
rule("basic-auth-header", "HTTP Basic credentials", r"(?i)\bauthorization\s*:\s*basic\s+([A-Za-z0-9+/]{8,}={0,2})", 1,
     ["Authorization: Basic dXNlcjpodW50ZXIy", f"authorization: basic {b64(40)}="], ["Authorization: Basic"])
rule("bearer-header", "HTTP Bearer token in a header", r"(?i)\bauthorization\s*:\s*bearer\s+([A-Za-z0-9._~+/-]{20,}=*)", 1,
     [f"Authorization: Bearer {url64(40)}"], ["Authorization: Bearer <token>"])
rule("x-api-key-header", "API key in an x-api-key header", r"(?i)\bx-api-key\s*:\s*([A-Za-z0-9._~+/-]{16,}=*)", 1,
     [f"x-api-key: {alnum(40)}"], ["x-api-key: <your key>"])
rule("password-assignment-quoted", "quoted password assignment",
     r"(?i)(?:password|passwd|pwd|passphrase)[\"']?\s*(?:[:=]|=>)\s*[\"']([^\"'\s<>(){}\[\]$]{6,128})[\"']", 1,
     [f'"password": "{alnum(12)}"', "db_password = 'Tr0ub4dor&3'", f"PASSWORD='{alnum(10)}'"],
     ['"password": ""', "password = '<password>'", "password: str", "password = ''"])
rule("ethereum-private-key", "Ethereum private key", r"(?i)(?:private[_-]?key|priv[_-]?key|secret)[\"']?\s*[:=]\s*[\"']?(0x[a-f0-9]{64})\b", 1, [f"PRIVATE_KEY=0x{hexl(64)}"], [])
rule("ssh-password-sshpass", "password given to sshpass", r"\bsshpass\s+-p\s*[\"']?([^\s\"']{4,})", 1, [f"sshpass -p {alnum(12)} ssh host"], ["sshpass -f file ssh host"])
rule("mysql-password-flag", "password on a mysql command line", r"\bmysql(?:dump|admin)?\b[^\n]*?\s-p([^\s\"'-][^\s\"']{3,})", 1, [f"mysqldump -u root -p{alnum(12)} shop"], ["mysql -u root -p shop"])
rule("pgpassword-env", "PostgreSQL password in the environment", r"\bPGPASSWORD=[\"']?([^\s\"']{4,})", 1, [f"PGPASSWORD={alnum(14)} psql -h db"], ["PGPASSWORD= psql"])


# --- keywords ---------------------------------------------------------------------------------
# Every match of a rule contains at least one of its keywords (ASCII case-insensitive). One
# Aho-Corasick pass over the text finds which keywords occur, and only rules with a keyword
# present run their regex (gitleaks' prefilter). Derived from the regex's literal prefix where it
# has one; written out here where it has not. A rule with no keywords always runs (slow: avoid).
KEYWORDS = {
    "aws-access-key-id": ["akia", "asia", "abia", "acca", "aroa", "aida", "aipa", "anpa", "anva", "agpa"],
    "azure-sas-token": ["sig="],
    "azure-ad-client-secret": ["q~"],
    "digitalocean-token": ["dop_v1_", "doo_v1_", "dor_v1_"],
    "hetzner-cloud-token": ["hcloud", "hetzner"],
    "cloudflare-api-token": ["cloudflare", "cf_", "cf-"],
    "terraform-cloud-token": [".atlasv1."],
    "hashicorp-vault-token": ["hvs.", "hvb.", "hvr."],
    "github-app-token": ["ghu_", "ghs_"],
    "sonarqube-token": ["squ_", "sqa_", "sqp_"],
    "sentry-dsn": ["sentry.io"],
    "grafana-token": ["glsa_", "glc_"],
    "datadog-api-key": ["datadog", "ddapi", "ddapp", "dd_api", "dd_app", "dd-api", "dd-app"],
    "slack-bot-token": ["xoxb-", "xoxa-", "xoxp-", "xoxr-", "xoxs-"],
    "slack-webhook": ["hooks.slack.com"],
    "discord-bot-token": [],
    "discord-webhook": ["discord"],
    "telegram-bot-token": [":aa"],
    "mailgun-signing-key": ["mailgun"],
    "mailchimp-key": ["-us"],
    "vonage-secret": ["vonage", "nexmo"],
    "teams-webhook": ["webhook.office.com"],
    "square-token": ["eaaa", "sq0atp-"],
    "shopify-token": ["shpat_", "shpca_", "shppa_", "shpss_"],
    "woocommerce-key": ["ck_", "cs_"],
    "mollie-key": ["live_", "test_"],
    "easypost-key": ["ezak", "eztk"],
    "openai-key": ["sk-proj-", "sk-svcacct-", "sk-admin-"],
    "openai-legacy-key": ["t3blbkfj"],
    "cohere-key": ["cohere", "coapi", "co_api", "co-api"],
    "notion-token": ["secret_", "ntn_"],
    "asana-token": ["asana"],
    "nextcloud-config-secret": ["secret", "passwordsalt", "dbpassword", "mail_smtppassword"],
    "wordpress-auth-key": ["_key", "_salt"],
    "wordpress-db-password": ["db_password"],
    "url-password": ["://"],
    "password-assignment-quoted": ["passw", "pwd", "passphrase"],
    "ethereum-private-key": ["0x"],
    "private-key": ["-----begin"],
    "slack-app-token": ["xapp-"],
    "sentry-token": ["sntrys_", "sntryu_"],
    "discord-webhook": ["discord"],
    "gcp-service-account-key": ["private_key_id"],
    "plaid-token": ["access-sandbox-", "access-development-", "access-production-"],
    "paypal-braintree-token": ["access_token$"],
}
ENTROPY_KEYWORDS = ["key", "secret", "token", "passw", "pwd", "passphrase", "credential", "bearer"]

def derive_keywords(regex):
    s = regex[4:] if regex.startswith("(?i)") else regex
    while True:
        for p in ("\\b", "("):
            if s.startswith(p) and not s.startswith("(?"):
                s = s[len(p):]
                break
        else:
            break
    m = re.match(r"\(\?:([A-Za-z0-9_|.\\/-]+)\)", s)
    if m:
        tail = re.match(r"[A-Za-z0-9_-]*", s[m.end():]).group(0)
        return [(a.replace("\\.", ".") + tail).lower() for a in m.group(1).split("|")]
    m = re.match(r"(?:[A-Za-z0-9_:/-]|\\\.)+", s)
    if m and len(m.group(0)) >= 2:
        return [m.group(0).replace("\\.", ".").lower()]
    raise SystemExit(f"no keywords derivable for {regex!r}: add it to KEYWORDS")

def keywords_of(id, regex, examples):
    kws = KEYWORDS[id] if id in KEYWORDS else derive_keywords(regex)
    for e in examples:
        assert not kws or any(k in e.lower() for k in kws), (id, e, kws)
    return kws

print("""# The redaction pattern pack: well-known credential formats (in the spirit of gitleaks' rules)
# and the context-gated entropy net. GENERATED by policies/tools/gen_redaction.py; edit the
# table there and regenerate. Examples use synthetic tokens of the real formats' shapes.
#
# Regexes are byte regexes with Unicode classes off (`\\w` and `\\d` are ASCII, as in Go RE2).
# A match's `secret_group` is replaced by `[REDACTED:id]`; the rest of the match survives.
# No rule may match `(`, `)`, `[` or `]` inside the secret part: that keeps redaction idempotent.

[redaction.entropy]
# A value right after key-like context is redacted when it is at least `min_length` long, mixes
# letters and digits, and has at least `threshold` bits of Shannon entropy per byte.
min_length = 16
threshold = 3.3
# The context is tried anchored where each keyword starts (`api_key` is found at its `key`), so
# it begins with the keywords; group 1 is the value.
context = '''(?i)(?:(?:key|secret|token|passw(?:or)?d|pwd|passphrase|credential)[a-z0-9_.-]{0,24}["']?[ \\t]*(?:[:=]|=>)[ \\t]*["']?|\\b(?:bearer|token)[ \\t]+)([A-Za-z0-9+/_.~=-]{16,256})'''
examples = [
    "REDIS_PASSWORD=aB3dE6gH9jK2mN5p",
    "api_key: 8f4b2c9d1e7a6f3b0c5d",
    "Authorization: Token 7Fq2Lz9Xw4Rk8Vn3Bt6Hy1Jm",
    "  client_secret = \\"Zq8R2mXv7Lk4Pw9Nb3Ty6Hs\\"",
    "SHOP_API_KEY=7XK2M9QP4WZ8R3TB6YHN",
    "webhook_secret: 4k9z2m7q1x8w3p6r5t0y",
]
keywords = [""" + ", ".join(f'"{k}"' for k in ENTROPY_KEYWORDS) + """]
counter_examples = [
    "let token = tokens.next();",
    "password: String,",
    "secret_key: [u8; 32],",
    "api_key = settings.OPENAI_API_KEY",
    "token: SECRET_REF(openai_api_key)",
    "password = [REDACTED:entropy]",
    "Bearer realm",
    "The token bucket refills every second.",
    "let password_hash = argon2.hash_password(password, &salt)?;",
    "colon2_token: self.colon2_token.clone(),",
    "DialogToken: DOT11_DIALOG_TOKEN,",
    "pub const PrivateKeyExportable: X509CertificateTemplatePrivateKeyFlag = 16i32;",
    "pub ikeCredentials: IKEEXT_CREDENTIALS2,",
    "pub const XCN_CERT_NO_KEY_USAGE: X509KeyUsageFlags = 0i32;",
]
""")
for (id, desc, regex, group, examples, counters) in RULES:
    assert "'''" not in regex
    print("[[redaction.rule]]")
    print(f'id = "{id}"')
    print(f'description = "{desc}"')
    print(f"regex = '''{regex}'''")
    if group is not None:
        print(f"secret_group = {group}")
    print("keywords = [" + ", ".join(f'"{k}"' for k in keywords_of(id, regex, examples)) + "]")
    def q(s):
        return "'''" + s + "'''" if ("\n" not in s and "'''" not in s and not s.endswith("'")) else '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    print("examples = [" + ", ".join(q(e) for e in examples) + "]")
    print("counter_examples = [" + ", ".join(q(c) for c in counters) + "]")
    print()
print(f"# {len(RULES)} rules", flush=True)
