"""`redact` masks numbers that could be a person's; the references we make must survive it."""

import itertools

from dereg.redact import redact, reference_token


def test_a_reference_token_is_never_all_digits_so_redact_leaves_it_whole(monkeypatch):
    draws = itertools.chain(["12345678", "20881021"], itertools.repeat("1234abcd"))
    monkeypatch.setattr("secrets.token_hex", lambda n: next(draws))
    token = reference_token()
    assert token == "1234abcd"
    backup_id = f"bk-20261203T162501Z-{token}"
    assert (
        redact(f"chunk 0 of {backup_id}/chunks/00000 failed") == f"chunk 0 of {backup_id}/chunks/00000 failed"
    )
    # the draw it refused would have been masked like a phone number
    assert "12345678" not in redact("bk-20261203T162501Z-12345678")
