"""ssl-certificate-renewal, the catalog's own runbook, against the lab's TLS stack: nginx serves
`lab.test` with a lab-CA certificate that expires in a few days; the runbook renews it with
certbot against pebble (a real ACME CA, real http-01 validation through nginx) and reloads nginx.
Every check of what is served is a real TLS handshake with nginx."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from lab.processes import running_pid
from lab.tls import DOMAIN, EXPIRING_DAYS

pytestmark = pytest.mark.lab


@pytest.fixture
def tls(lab):
    """The lab's TLS service with an expiring certificate served, whatever ran before."""
    service = lab.service("tls")
    service.install_expiring_certificate()
    return service


def story(result, steps) -> str:
    """What happened, for an assertion message."""
    lines = [f"{s.step_id}: {s.status} {s.error or ''} rollback {s.rollback_status}" for s in steps]
    return "\n".join([*lines, result.stdout[-3000:], result.stderr[-3000:]])


def on_disk(tls) -> x509.Certificate:
    return x509.load_pem_x509_certificate((tls.live_dir / "cert.pem").read_bytes())


def test_renewal_serves_a_new_certificate_that_verifies_against_pebbles_root(lab, tls, tmp_path):
    before = tls.served_certificate()
    assert before.not_valid_after_utc < datetime.now(UTC) + timedelta(days=EXPIRING_DAYS)
    pebble_root = tmp_path / "pebble-root.pem"
    pebble_root.write_text(tls.pebble_root())
    # The expiring certificate comes from the lab CA, so pebble's root does not vouch for it.
    with pytest.raises(ssl.SSLCertVerificationError):
        tls.served_certificate(cafile=pebble_root)

    result, execution, steps = lab.run("ssl-certificate-renewal", *tls.runbook_parameters())

    assert result.returncode == 0, story(result, steps)
    assert execution.status == "succeeded"
    assert [s.status for s in steps] == ["succeeded"] * 6
    assert "due=yes" in steps[0].output_tail
    assert "expires within 30 days: renewing" in steps[2].output_tail
    # A verified handshake (chain to pebble's root, host name lab.test) gets the new certificate
    # (once the workers from before the reload are gone).
    tls.wait_until_served(on_disk(tls).serial_number)
    after = tls.served_certificate(cafile=pebble_root)
    assert after.serial_number != before.serial_number
    assert after.not_valid_after_utc > before.not_valid_after_utc + timedelta(days=30)
    assert after.serial_number == on_disk(tls).serial_number
    names = after.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [DOMAIN]


def test_a_failing_nginx_config_test_rolls_back_and_nginx_keeps_serving_the_old_certificate(
    lab, tls
):
    before = tls.served_certificate()
    nginx_pid = running_pid(tls.layout, "nginx")
    renewal_conf = tls.certbot_config / "renewal" / f"{DOMAIN}.conf"
    kept = {path: path.read_text() for path in (renewal_conf, tls.site_conf)}
    live_cert = (tls.live_dir / "cert.pem").readlink()
    # What happens in life: someone enabled a site for a new name before its certificate was
    # issued. The running nginx never loaded it, but `nginx -t` fails on the missing file.
    half_finished = tls.sites_dir / "new-shop.conf"
    missing = tls.certbot_config / "live" / f"new.{DOMAIN}"
    half_finished.write_text(
        "server {\n"
        f"    listen 127.0.0.1:{tls.tls_port} ssl;\n"
        f"    server_name new.{DOMAIN};\n"
        f"    ssl_certificate {missing / 'fullchain.pem'};\n"
        f"    ssl_certificate_key {missing / 'privkey.pem'};\n"
        "}\n"
    )
    try:
        result, execution, steps = lab.run("ssl-certificate-renewal", *tls.runbook_parameters())
    finally:
        half_finished.unlink()

    assert result.returncode == 1, story(result, steps)
    assert execution.status == "rolled_back", story(result, steps)
    assert [(s.step_id, s.status) for s in steps] == [
        ("check-expiry", "succeeded"),
        ("backup-tls-files", "succeeded"),
        ("renew-certificate", "succeeded"),
        ("test-nginx-config", "failed"),
        ("reload-nginx", "skipped"),
        ("verify-served-certificate", "skipped"),
    ]
    assert steps[2].rollback_status == "succeeded"
    # nginx was never reloaded: the same master serves the old certificate.
    assert running_pid(tls.layout, "nginx") == nginx_pid
    assert tls.served_certificate().serial_number == before.serial_number
    # certbot's renewal was undone: the lineage and the nginx file are as before the run.
    assert on_disk(tls).serial_number == before.serial_number
    assert (tls.live_dir / "cert.pem").readlink() == live_cert
    assert {path: path.read_text() for path in kept} == kept
    versions = (tls.certbot_config / "archive" / DOMAIN).glob("cert*.pem")
    newest = max(versions, key=lambda p: int(p.stem.removeprefix("cert")))
    assert newest.name == live_cert.name  # certbot's new version is gone


def test_outside_the_renewal_window_nothing_is_renewed(lab, tls):
    before = tls.served_certificate()
    archive = sorted(p.name for p in (tls.certbot_config / "archive" / DOMAIN).iterdir())
    # The served certificate has about EXPIRING_DAYS days left: not due within 2 days (5 - 3).
    window = EXPIRING_DAYS - 3
    params = [*tls.runbook_parameters(), f"days_before_expiry={window}"]

    result, execution, steps = lab.run("ssl-certificate-renewal", *params)

    assert result.returncode == 0, story(result, steps)
    assert execution.status == "succeeded"
    assert "due=no" in steps[0].output_tail
    assert "nothing to renew" in steps[2].output_tail
    tls.wait_until_served(before.serial_number)  # after the runbook's reload, still the same
    assert sorted(p.name for p in (tls.certbot_config / "archive" / DOMAIN).iterdir()) == archive
