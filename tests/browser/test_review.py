"""Manual review in headless Chromium: a manager approves a proof that finance recorded."""

from __future__ import annotations

import struct
import zlib

from browser_support import Dashboard, screenshot, sign_in
from factories import make_payment
from playwright.sync_api import Page
from sqlmodel import Session

from payments_core.config import Settings
from payments_core.db import make_engine
from payments_core.models import Role
from payments_core.services import proofs
from payments_core.services.permissions import Actor

FINANCE = Actor("finance@example.com", Role.FINANCE)
MANAGER2 = Actor("manager2@example.com", Role.MANAGER)


def small_png(width: int = 40, height: int = 24) -> bytes:
    """A real (decodable) PNG: a green rectangle, so the preview has something to draw."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x20\xa0\x40" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def proof_recorded_by(
    dashboard: Dashboard, actor: Actor, reference: str, png: bytes | None = None
) -> tuple[str, str]:
    """A manual payment with a proof ``actor`` recorded, in the app's database; (payment, proof)."""
    settings = Settings(database_url=dashboard.database_url, var_dir=dashboard.var_dir)
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session, session.begin():
            payment = make_payment(
                session,
                provider="manual",
                provider_reference=None,
                method="bank_transfer",
                amount_minor=12_500,
                currency="CHF",
            )
            proof = proofs.record_proof_by_staff(
                session=session,
                settings=settings,
                actor=actor,
                payment_id=payment.id,
                reference=reference,
                amount_minor=payment.amount_minor,
                file=proofs.ProofFile("receipt.png", png or small_png()),
            )
            return payment.id, proof.id
    finally:
        engine.dispose()


def test_a_manager_approves_a_proof_recorded_by_finance(page: Page, dashboard: Dashboard) -> None:
    payment_id, proof_id = proof_recorded_by(dashboard, FINANCE, "bank transfer BR-7781")

    sign_in(page, dashboard, "manager")
    page.wait_for_url("**/payments")
    page.click("#nav-review")
    page.wait_for_url("**/review")
    row = page.locator(".proof-row", has_text=proof_id)
    row.wait_for()
    assert payment_id in row.inner_text() and "finance@example.com" in row.inner_text()
    row.locator(".proof-select").click()
    page.wait_for_selector(f"#proof-fields >> text={proof_id}")
    assert "BR-7781" in page.inner_text("#proof-fields")
    page.wait_for_function(
        "() => { const i = document.querySelector('#proof-preview');"
        " return i && i.complete && i.naturalWidth === 40; }"
    )
    screenshot(page, dashboard, "review")

    page.click("#approve")
    message = page.wait_for_selector("#review-message")
    assert message is not None and proof_id in message.inner_text()
    assert page.locator(".proof-row", has_text=proof_id).count() == 0
    screenshot(page, dashboard, "review-approved")

    page.goto(f"{dashboard.url}/payments/{payment_id}")
    page.wait_for_selector(".timeline-row")
    assert "succeeded" in page.inner_text("#payment-fields")
    assert f"Proof {proof_id} approved by manager@example.com" in page.inner_text("#timeline")


def test_a_recorder_is_refused_review_and_a_rejection_needs_a_reason(
    page: Page, dashboard: Dashboard
) -> None:
    # The same file on two payments: the second proof is flagged with the first payment.
    png = small_png(width=41)
    first_payment_id, _ = proof_recorded_by(dashboard, FINANCE, "cash at the counter C-18", png)
    _, proof_id = proof_recorded_by(dashboard, MANAGER2, "cash at the counter C-19", png)

    sign_in(page, dashboard, "manager2")
    page.wait_for_url("**/payments")
    page.goto(f"{dashboard.url}/review")
    row = page.locator(".proof-row", has_text=proof_id)
    row.wait_for()
    row.locator(".proof-select").click()
    page.wait_for_selector(f"#proof-fields >> text={proof_id}")
    assert page.inner_text("#duplicate-link") == first_payment_id
    assert page.get_attribute("#duplicate-link", "href") == f"/payments/{first_payment_id}"

    page.click("#approve")
    error = page.wait_for_selector("#review-error")
    assert error is not None and "cannot review it" in error.inner_text()
    page.click("#reject")
    page.wait_for_function(
        "() => document.querySelector('#review-error')?.innerText.includes('say why')"
    )
    assert page.locator(".proof-row", has_text=proof_id).count() == 1
    screenshot(page, dashboard, "review-refused")


def test_finance_sees_no_review_page(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "finance")
    page.wait_for_url("**/payments")
    page.wait_for_selector(".payment-row")
    assert page.locator("#nav-review").count() == 0
    # Typing the address does not help: the page's on_load checks the role on the server.
    page.goto(f"{dashboard.url}/review")
    page.wait_for_url("**/payments")
    screenshot(page, dashboard, "review-finance")
