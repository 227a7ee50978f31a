"""`dereg`: the command line, usable without Airflow.

    dereg keyring init [--path P] [--force]
    dereg keyring rotate [--grace-days N] [--rewrap-only]
    dereg keyring destroy-retired
    dereg keyring public-key [--path P] [--out FILE]
    dereg verify-ledger [--store URL] [--checkpoints s3://BUCKET/PREFIX ...] [--public-key PEM]
    dereg verify-certificate PATH [--public-key PEM] [--store URL | --no-ledger]
                             [--checkpoints s3://BUCKET/PREFIX ...]
    dereg scan SOURCE_URL [--full] [--json PATH] [--html PATH] [--sample-size N]
               [--subject-table T] [--closure-date YYYY-MM-DD]
    dereg init SOURCE_URL [--out FILE] [--source-id ID] [--sample-size N]
    dereg backup SOURCE_URL --to s3://BUCKET/PREFIX [--company ID] [--retention-days N] [--no-object-lock]
    dereg restore BACKUP_ID --from s3://BUCKET/PREFIX [--into TARGET_URL | --scratch-url PG_URL] --verify
    dereg catalog rebuild --from s3://BUCKET/PREFIX
    dereg shred BACKUP_ID --from s3://BUCKET/PREFIX --yes
    dereg shred-subject --company ID --subject-ref REF [--from s3://BUCKET/PREFIX] --yes
    dereg answers import FILE.csv --company ID --run RUN_ID
    dereg answers replies PATH... --company ID --run RUN_ID
    dereg answers waive --company ID --run RUN_ID (--email ADDRESS | --ref REF) --reason TEXT --by NAME
    dereg answers status --company ID --run RUN_ID
    dereg copies purge
    dereg manifest-schema [--out PATH]

Exit codes: 0 success / valid, 1 invalid, 2 an error (the message says what and how to fix it);
`verify-certificate` also 3: intact and signed, but the signer is not authenticated (no
`--public-key` and no keyring of this deployment to pin the key to).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from dereg.errors import DeregError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn

    return register


@command("keyring init")
def _keyring_init(args) -> int:
    from dereg.keys import Keyring, public_key_fingerprint

    ring = Keyring.create(Path(args.path) if args.path else None, overwrite=args.force)
    print(f"keyring written to {ring.path} (mode 600)")
    print(f"signing key {ring.signing_key_id}, fingerprint {public_key_fingerprint(ring.public_key())}")
    print("Keep a copy off this machine: without it, backups cannot be restored.")
    return 0


@command("keyring rotate")
def _keyring_rotate(args) -> int:
    from dereg.evidence.store import open_store
    from dereg.keys_kms import backup_key_provider
    from dereg.rotation import policy, rewrap_backups, rotate_keyring, rotated_message

    # the backups' key provider: the KMS key of DEREG_KMS_KEY_ID when set, else the keyring file
    ring = backup_key_provider(Path(args.path) if args.path else None)
    store = open_store()
    if not args.rewrap_only:
        grace = args.grace_days if args.grace_days is not None else policy()["grace_days"]
        print(rotated_message(rotate_keyring(ring, grace_days=grace, store=store, actor="cli")))
    done = rewrap_backups(store, ring, _s3_location("s3://unused"), actor="cli")
    print(
        f"{sum(done['rewrapped'].values())} backup key(s) re-wrapped under {done['kek']} ({done['rewrapped'] or 'none'})"
    )
    for kept in done["escrow_versions_kept"]:
        print(
            f"WARNING: old escrow version {kept['key']} ({kept['version']}) could not be deleted: {kept['why']}"
        )
    return 0


@command("keyring destroy-retired")
def _keyring_destroy_retired(args) -> int:
    from dereg.evidence.store import open_store
    from dereg.keys import Keyring
    from dereg.rotation import destroy_retired

    ring = Keyring.load(Path(args.path) if args.path else None)
    result = destroy_retired(ring, open_store(), _s3_location("s3://unused"), actor="cli")
    print(
        f"destroyed: {result['destroyed'] or 'none'}; waiting for their grace period: {result['waiting'] or 'none'}"
    )
    return 0


@command("keyring public-key")
def _keyring_public_key(args) -> int:
    from dereg.keys import Keyring, public_key_fingerprint, public_key_pem

    ring = Keyring.load(Path(args.path) if args.path else None)
    pem = public_key_pem(ring.public_key())
    if args.out:
        Path(args.out).write_text(pem)
        print(f"public key written to {args.out}")
    else:
        print(pem, end="")
    print(
        f"fingerprint {public_key_fingerprint(ring.public_key())}",
        file=sys.stderr if not args.out else sys.stdout,
    )
    return 0


def _pinned_public_key(path: str | None):
    """(key, how it was found): `--public-key PEM`, else the public key of this deployment's keyring
    when the keyring file is here (DEREG_KEYRING), else (None, None)."""
    from dereg import config
    from dereg.keys import Keyring, load_public_key_pem

    if path:
        try:
            return load_public_key_pem(Path(path).read_text()), f"--public-key {path}"
        except OSError as exc:
            raise DeregError(f"cannot read the public key {path} ({exc.strerror})") from None
        except ValueError as exc:
            raise DeregError(f"{path} is not a PEM public key ({exc})") from None
    if config.keyring_path().exists():
        return Keyring.load().public_key(), f"this deployment's keyring {config.keyring_path()}"
    return None, None


def _checkpoint_locations(urls: list[str] | None) -> list:
    return [_s3_location(url) for url in urls or []]


@command("verify-ledger")
def _verify_ledger(args) -> int:
    from dereg import config
    from dereg.evidence.checkpoints import compare_with_checkpoints
    from dereg.evidence.ledger import Ledger
    from dereg.evidence.store import open_store

    locations = _checkpoint_locations(args.checkpoints)
    public_key = None
    if locations:
        public_key, _ = _pinned_public_key(args.public_key)
        if public_key is None:
            raise DeregError(
                "--checkpoints: checkpoints are checked against the deployment's signing key; pass "
                "--public-key PEM (from `dereg keyring public-key`) or set DEREG_KEYRING"
            )
    store = open_store(args.store or config.store_url())
    result = Ledger(store).verify()
    if result.ok:
        print(f"ledger OK: {result.entries_checked} entries checked; {result.reason}")
    else:
        print(f"ledger BROKEN after {result.entries_checked} good entries: {result.reason}")
    anchored = True
    for location in locations:
        comparison = compare_with_checkpoints(store, location, public_key)
        for check in comparison.checks:
            print(f"  ok   {check}")
        for problem in comparison.problems:
            print(f"  FAIL {problem}")
        anchored = anchored and comparison.ok
    if not locations:
        print(
            "  note the ledger was not compared with its off-site checkpoints (pass --checkpoints "
            "s3://BUCKET/PREFIX): entries removed from the end, or a chain rewritten from an edited entry, "
            "are only found that way"
        )
    elif result.ok and not anchored:
        print("ledger does NOT MATCH its off-site checkpoints")
    return 0 if result.ok and anchored else 1


@command("verify-certificate")
def _verify_certificate(args) -> int:
    from dereg.evidence.certificate import load_certificate, verify_certificate

    cert = load_certificate(Path(args.path))
    public_key, pinned_from = _pinned_public_key(args.public_key)
    locations = _checkpoint_locations(args.checkpoints)
    if locations and args.no_ledger:
        raise DeregError(
            "--checkpoints compares the ledger with its checkpoints: it cannot go with --no-ledger"
        )
    store, store_note = None, None
    if not args.no_ledger:
        from dereg import config
        from dereg.dialects import dialect_for
        from dereg.evidence.store import open_store

        url = args.store or config.store_url()
        if dialect_for(url).missing_file(url) is not None:
            if args.store:
                raise DeregError(f"compliance store {url} does not exist")
            store_note = (
                f"ledger evidence not checked: no compliance store at {url} "
                "(pass --store URL, or --no-ledger to check the signature only)"
            )
        else:
            store = open_store(url)
    else:
        store_note = "ledger evidence not checked (--no-ledger)"
    if locations and store is None:
        raise DeregError(f"--checkpoints needs the compliance store: {store_note}")
    result = verify_certificate(cert, public_key=public_key, store=store, checkpoints=locations)
    for check in result.checks:
        print(f"  ok   {check}")
    for problem in result.problems:
        print(f"  FAIL {problem}")
    if pinned_from and result.signer_authenticated:
        print(f"  note the signing key was pinned from {pinned_from}")
    if store_note:
        print(f"  note {store_note}")
    elif store is not None and not result.ok:
        import sqlalchemy as sa

        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        print(
            f"  note the ledger was read from {shown}; a certificate issued by another deployment (e.g. "
            "the distributed stack) is checked against its own store: pass --store URL"
        )
    if store is not None and not locations:
        where = (
            (cert.get("body") or {}).get("ledger", {}).get("checkpoints") if isinstance(cert, dict) else None
        )
        print(
            "  note the ledger was not compared with its off-site checkpoints: pass --checkpoints "
            f"{where or 's3://BUCKET/PREFIX'} (entries removed from the end, or a chain rewritten from an "
            "edited entry, are only found that way)"
        )
    if not result.ok:
        print(f"{args.path}: INVALID")
        return 1
    if not result.signer_authenticated:
        print(
            f"{args.path}: SIGNER NOT AUTHENTICATED: intact and signed, but by the key inside the certificate "
            "itself, which anyone can make. Pass --public-key with the deployment's published key "
            "(`dereg keyring public-key`) to check who signed it"
        )
        return 3
    print(f"{args.path}: VALID")
    return 0


@command("scan")
def _scan(args) -> int:
    if args.full and not args.source_url.startswith("s3://"):
        from dereg import scanworkers

        # forked once the workers' modules (and the source's driver) are imported here
        scanworkers.start_server(here=True, url=args.source_url)
    from dereg.classify.scan import print_summary, scan_url

    report = scan_url(
        args.source_url,
        full=args.full,
        sample_size=args.sample_size,
        subject_table=args.subject_table,
        closure_date=args.closure_date,
        progress=lambda line: print(line, file=sys.stderr),
    )
    from dereg.classify.report import write_report  # after the scan: its workers start sooner

    write_report(report, Path(args.json) if args.json else None, Path(args.html) if args.html else None)
    if args.full:
        from dereg.classify import parallel

        parallel.stop_server()  # `run` leaves with os._exit: no atexit
    print_summary(report)
    if args.json:
        print(f"JSON report: {args.json}")
    if args.html:
        print(f"HTML report: {args.html}")
    return 1 if report["problems"] else 0


@command("init")
def _init(args) -> int:
    from dereg.connections import ConnectionProblem, database_engine, display_url
    from dereg.inventory.draft import build_draft

    try:
        engine = database_engine(args.source_url, what="SOURCE_URL")
    except ConnectionProblem as exc:
        raise DeregError(str(exc)) from None
    try:
        draft = build_draft(
            engine,
            source_id=args.source_id,
            where=display_url(args.source_url),
            sample_size=args.sample_size,
            progress=lambda line: print(line, file=sys.stderr),
        )
    finally:
        engine.dispose()
    text = draft.render()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"draft manifest written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    best = draft.subject_table or "none found"
    print(
        f"subject table: {best}; {len(draft.linked)} linked table(s), {len(draft.by_name)} linked by column "
        f"names only, {len(draft.retain)} proposed under retain, {len(draft.undecided)} undecided table(s). "
        "Fill in every TODO, then start a dry run.",
        file=sys.stderr,
    )
    return 0


def _s3_location(url: str):
    """An s3://BUCKET/PREFIX with the endpoint and keys of the standard AWS environment variables."""
    from dereg.connections import s3_location_from_env

    return s3_location_from_env(url)


#: commands whose imports (SQLAlchemy, botocore, ours: hundreds of thousands of objects that live
#: until the process ends) are made with the garbage collector off and then left out of its later
#: collections, which would otherwise walk them again and again while the chunks stream
_LONG_LIVED_IMPORTS = ("backup", "restore")


def _freeze_imports() -> None:
    """Called once a command of `_LONG_LIVED_IMPORTS` has imported what it needs (see `main`)."""
    import gc

    gc.freeze()
    gc.enable()


@command("backup")
def _backup(args) -> int:
    import datetime as dt
    import uuid

    from dereg.backup.archive import create_backup
    from dereg.connections import database_engine, display_url
    from dereg.evidence.store import open_store
    from dereg.keys_kms import backup_key_provider

    keyring = backup_key_provider()
    location = _s3_location(args.to)
    engine = database_engine(args.source_url, what="SOURCE_URL")  # imports its dialect
    _freeze_imports()
    source_id = (engine.url.database or "source").rsplit("/", 1)[-1].split(".")[0] or "source"
    source_id = "".join(ch if ch.isalnum() else "_" for ch in source_id.lower())
    # a fresh run id per command: a backup of the same run would be reused, not taken again
    run_id = "cli-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    try:
        record = create_backup(
            engine,
            company_id=args.company,
            run_id=run_id,
            source_id=source_id,
            location=location,
            keyring=keyring,
            store=open_store(),
            retention_days=args.retention_days,
            object_lock=not args.no_object_lock,
            progress=lambda line: print(line, file=sys.stderr),
        )
    finally:
        engine.dispose()
    print(
        f"backed up {display_url(args.source_url)}: {record.total_rows} rows to {location.describe()}, "
        f"retained until {record.retain_until}",
        file=sys.stderr,
    )
    print(record.backup_id)
    return 0


@command("restore")
def _restore(args) -> int:
    import os

    from dereg.backup.restore import restore_and_verify
    from dereg.connections import display_url
    from dereg.evidence.store import open_store
    from dereg.keys_kms import backup_key_provider

    if not args.verify:
        raise DeregError("restore always verifies what it restores; pass --verify to say you expect that")
    _freeze_imports()
    report = restore_and_verify(
        args.backup_id,
        location=_s3_location(getattr(args, "from")),
        keyring=backup_key_provider(),
        store=open_store(),
        into_url=args.into,
        scratch_url=None if args.into else (args.scratch_url or os.environ.get("DEREG_SCRATCH_PG_URL")),
        progress=lambda line: print(line, file=sys.stderr),
        full_check=args.full_check,
    )
    for table, result in sorted(report.tables.items()):
        print(f"  {table}: {result}")
    for problem in report.problems:
        print(f"  MISMATCH {problem}")
    for warning in report.warnings:
        print(f"  WARNING {warning}")
    if report.schema_rebuilt:
        print(
            f"  schema of the source rebuilt in {display_url(args.into)}: tables, types, keys, indexes, views, triggers"
        )
    print(f"backup {args.backup_id}: {'restored and verified' if report.ok else 'VERIFICATION FAILED'}")
    return 0 if report.ok else 1


@command("catalog rebuild")
def _catalog_rebuild(args) -> int:
    from dereg.backup.catalog import rebuild
    from dereg.evidence.store import open_store
    from dereg.keys_kms import backup_key_provider

    location = _s3_location(getattr(args, "from"))
    try:  # the keyring authenticates each manifest before it is catalogued
        keyring = backup_key_provider()
    except DeregError as exc:
        print(f"WARNING: no keyring ({exc}); manifests are catalogued unauthenticated", file=sys.stderr)
        keyring = None
    counts = rebuild(
        open_store(), location, keyring=keyring, progress=lambda line: print(line, file=sys.stderr)
    )
    print(
        f"{location.describe()}: {counts['found']} backups found, {counts['added']} added to the catalog "
        f"({counts['shredded']} crypto-shredded), {counts['known']} already known"
        + (f", {counts['refused']} REFUSED (manifest fails authentication)" if counts["refused"] else "")
    )
    return 1 if counts["refused"] else 0


@command("shred")
def _shred(args) -> int:
    from dereg.backup.catalog import crypto_shred
    from dereg.evidence.store import open_store

    if not args.yes:
        raise DeregError(
            f"crypto-shredding {args.backup_id} cannot be undone: nobody will ever decrypt it again. "
            "Pass --yes to confirm."
        )
    result = crypto_shred(open_store(), _s3_location(getattr(args, "from")), args.backup_id)
    print(
        f"backup {args.backup_id} crypto-shredded: the key in the compliance store destroyed and "
        f"{result['escrow_versions_deleted']} escrow version(s) deleted from "
        f"s3://{result['bucket']}/{result['prefix']}/_escrow (the catalog's location)"
    )
    return 0


@command("shred-subject")
def _shred_subject(args) -> int:
    from dereg.evidence.store import open_store
    from dereg.keys import Keyring
    from dereg.keys_kms import backup_key_provider
    from dereg.subjectshred import done_message, shred_subject

    if not args.yes:
        raise DeregError(
            f"destroying the key of subject {args.subject_ref!r} in every backup of {args.company} cannot be "
            "undone: that customer's personal columns will never be decrypted again. Pass --yes to confirm."
        )
    # the endpoint and credentials; each backup's bucket and prefix are the catalog's
    location = _s3_location(getattr(args, "from") or "s3://dereg-catalog-location")
    result = shred_subject(
        open_store(),
        location,
        backup_key_provider(),
        company_id=args.company,
        subject_ref=args.subject_ref,
        signing_keyring=Keyring.load(),
        progress=lambda line: print(line, file=sys.stderr),
    )
    for backup_id, why in result["without_subject_keys"]:
        print(
            f"  WARNING backup {backup_id} has no per-subject keys ({why}): the subject's rows there go only "
            "with the whole backup"
        )
    print(done_message(result))
    return 0


def _print_import(result, what: str) -> int:
    for problem in result.problems:
        print(f"  - {problem}", file=sys.stderr)
    if result.problems and not result.total:
        print(
            f"{what}: nothing recorded ({len(result.problems)} problem(s) above; fix them and import again)"
        )
        return 1
    recorded = ", ".join(f"{n} {c}" for c, n in result.recorded.items())
    print(f"{what}: {result.total} answer(s) recorded ({recorded}); {result.skipped} skipped")
    return 1 if result.problems else 0


@command("answers import")
def _answers_import(args) -> int:
    from dereg.evidence.store import open_store
    from dereg.keys import Keyring
    from dereg.notify.answers import import_csv

    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeregError(f"{path}: cannot be read as UTF-8 text ({type(exc).__name__})") from None
    result = import_csv(
        open_store(),
        text,
        company_id=args.company,
        run_id=args.run,
        pseudonym_key=Keyring.load().pseudonym_key,
        name=path.name,
    )
    return _print_import(result, path.name)


@command("answers replies")
def _answers_replies(args) -> int:
    from dereg.evidence.store import open_store
    from dereg.notify.answers import import_replies

    result = import_replies(
        open_store(), [Path(p) for p in args.paths], company_id=args.company, run_id=args.run
    )
    return _print_import(result, "replies")


@command("answers waive")
def _answers_waive(args) -> int:
    from dereg.evidence.ledger import Ledger
    from dereg.evidence.store import open_store
    from dereg.keys import Keyring
    from dereg.notify.answers import current_answers, mark_fulfilled
    from dereg.notify.records import recipient_ref

    if len(args.reason.strip()) < 5:
        raise DeregError(
            "--reason: say why the request is waived (at least 5 characters); it goes in the ledger"
        )
    store = open_store()
    ref = args.ref or recipient_ref(Keyring.load().pseudonym_key, args.email)
    answer = current_answers(store, args.company, args.run).get(ref)
    if answer is None or answer["choice"] not in ("copy", "transfer"):
        raise DeregError(f"recipient {ref[:12]}… has no copy or transfer request in run {args.run}")
    mark_fulfilled(
        store,
        company_id=args.company,
        run_id=args.run,
        ref=ref,
        choice=answer["choice"],
        status="waived",
        detail=args.reason,
        actor=args.by,
    )
    Ledger(store).append(
        company_id=args.company,
        run_id=args.run,
        stage="fulfil_requests",
        event="waived",
        actor=args.by,
        details={"recipient_ref": ref, "choice": answer["choice"], "reason": args.reason},
    )
    print(f"{answer['choice']} request of {ref[:12]}… waived by {args.by}; recorded in the ledger")
    return 0


@command("answers status")
def _answers_status(args) -> int:
    from dereg.evidence.store import open_store
    from dereg.notify.answers import answer_counts, open_requests

    store = open_store()
    counts = answer_counts(store, args.company, args.run)
    pending = open_requests(store, args.company, args.run)
    print(f"answers: {counts}")
    print(f"open requests (neither fulfilled nor waived): {len(pending)}")
    for ref, choice in sorted(pending.items()):
        print(f"  {ref}  {choice}")
    return 0


@command("notices unconfirmed")
def _notices_unconfirmed(args) -> int:
    from dereg.evidence.store import open_store
    from dereg.notify.records import unconfirmed

    ids = unconfirmed(open_store(), args.company, args.run)
    print(
        f"{len(ids)} notice(s) marked sending with no recorded outcome; look these Message-IDs up in the relay's log:"
    )
    for mid in ids:
        print(f"  {mid}")
    return 0


@command("notices resolve")
def _notices_resolve(args) -> int:
    from dereg.evidence.store import open_store
    from dereg.notify.records import resolve, unconfirmed

    store = open_store()
    known = set(unconfirmed(store, args.company, args.run))
    unknown = [m for m in args.message_ids if m not in known]
    if unknown:
        print(
            f"dereg: error: {len(unknown)} Message-ID(s) are not unconfirmed notices of this run "
            f"(first: {unknown[0]}); list them with: dereg notices unconfirmed --company {args.company} --run ...",
            file=sys.stderr,
        )
        return 2
    changed = resolve(store, args.company, args.run, args.message_ids, delivered=args.delivered)
    verdict = (
        "delivered (recorded as sent)"
        if args.delivered
        else "not delivered (sent by the next run of notify_customers)"
    )
    print(f"{changed} notice(s) marked {verdict}; {len(known) - changed} still unconfirmed")
    return 0


@command("copies purge")
def _copies_purge(args) -> int:
    from dereg.evidence.store import open_store
    from dereg.notify.fulfil import purge_expired_copies

    print(f"{purge_expired_copies(open_store())} expired customer copies deleted")
    return 0


@command("manifest-schema")
def _manifest_schema(args) -> int:
    from dereg.manifest.schema import schema_text

    if args.out:
        Path(args.out).write_text(schema_text(), encoding="utf-8")
        print(f"manifest JSON Schema written to {args.out}")
    else:
        sys.stdout.write(schema_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dereg", description="Dereg: personal-data side of a company closure."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    keyring = sub.add_parser("keyring", help="create or inspect the keyring")
    ksub = keyring.add_subparsers(dest="keyring_command", required=True)
    init = ksub.add_parser("init", help="create a keyring with fresh keys")
    init.add_argument("--path", help="keyring file (default: $DEREG_KEYRING or .state/keyring.json)")
    init.add_argument(
        "--force", action="store_true", help="overwrite an existing keyring (its keys are lost)"
    )
    rot = ksub.add_parser(
        "rotate",
        help="new key-encryption key; re-wrap every live backup key under it",
        description="Make a fresh key-encryption key the active one, retire the old one (it still unwraps until "
        "destroyed), then re-wrap every live backup data key under the new one: a new version of its escrow "
        "object first, then the compliance store's row, then the escrow object's older versions deleted. "
        "Endpoint and keys of the store from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; "
        "buckets and prefixes from the catalog. Finish an interrupted rotation with --rewrap-only (without it, "
        "each run makes yet another key).",
    )
    rot.add_argument("--path")
    rot.add_argument(
        "--grace-days",
        type=_days(0),
        help="days before the old key may be destroyed (policy: include/policy/keys.yaml)",
    )
    rot.add_argument(
        "--rewrap-only", action="store_true", help="do not rotate; re-wrap what is not under the active key"
    )
    dr = ksub.add_parser(
        "destroy-retired",
        help="destroy retired key-encryption keys whose grace period is over",
        description="Remove from the keyring every retired key-encryption key whose grace period is over, "
        "after checking that no live backup key (in the store or in any version of an escrow object) is "
        "still wrapped under it; refuses otherwise.",
    )
    dr.add_argument("--path")
    pub = ksub.add_parser("public-key", help="print the certificate-signing public key (PEM)")
    pub.add_argument("--path")
    pub.add_argument("--out", help="write the PEM to this file")

    checkpoints_help = (
        "compare the ledger with the signed checkpoints the closure stages wrote to this backup store "
        "(the manifest's backup bucket and prefix; endpoint and keys from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY); repeat for several companies' stores"
    )
    ledger = sub.add_parser(
        "verify-ledger",
        help="recompute the ledger's hash chain (and compare it with its off-site checkpoints)",
        description="Recompute every hash of the ledger. With --checkpoints, also compare it with the signed "
        "checkpoints in the off-site store: entries removed from the end or a chain rewritten from an edited "
        "entry are found only that way. Exit 0 intact (and matching), 1 broken or not matching, 2 an error.",
    )
    ledger.add_argument("--store", help="compliance store URL (default: $DEREG_STORE_URL)")
    ledger.add_argument("--checkpoints", action="append", metavar="s3://BUCKET/PREFIX", help=checkpoints_help)
    ledger.add_argument(
        "--public-key",
        metavar="PEM",
        help="the deployment's signing public key, which checkpoints are checked against (default: the "
        "keyring's, $DEREG_KEYRING)",
    )

    cert = sub.add_parser(
        "verify-certificate",
        help="verify a certificate of erasure offline",
        description="Check the certificate's Ed25519 signature, and with the compliance store the ledger "
        "entries it cites and the hash chain; with --checkpoints, the ledger against its signed off-site "
        "checkpoints. Exit 0 VALID; 1 INVALID; 2 an error; 3 SIGNER NOT AUTHENTICATED: everything checks "
        "out but the key was taken from the certificate itself (no --public-key, no keyring of this "
        "deployment), so anyone could have signed it.",
    )
    cert.add_argument("path")
    cert.add_argument(
        "--public-key",
        metavar="PEM",
        help="PEM file of the deployment's signing key (default: the keyring's, $DEREG_KEYRING, when present)",
    )
    cert.add_argument(
        "--store",
        help="compliance store URL whose ledger the certificate cites "
        "(default: $DEREG_STORE_URL or .state/compliance.db)",
    )
    cert.add_argument("--no-ledger", action="store_true", help="check the signature only (offline, no store)")
    cert.add_argument("--checkpoints", action="append", metavar="s3://BUCKET/PREFIX", help=checkpoints_help)

    scan = sub.add_parser(
        "scan",
        help="inventory and classify one source (exit 1 when some tables could not be read)",
        description="Inventory and classify a database (SQLAlchemy URL) or an S3 prefix (s3://BUCKET/PREFIX; "
        "endpoint and keys from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). Prints the personal "
        "columns; the reports list every column. No personal value is printed or written: masked examples only.",
    )
    scan.add_argument("source_url", metavar="SOURCE_URL")
    scan.add_argument(
        "--full", action="store_true", help="read every value, not a sample (slower; for verification)"
    )
    scan.add_argument("--json", metavar="PATH", help="write the JSON report here")
    scan.add_argument("--html", metavar="PATH", help="write the HTML report here")
    scan.add_argument(
        "--sample-size", type=int, default=2000, help="rows read per table in sample mode (2000)"
    )
    scan.add_argument(
        "--subject-table",
        help="the customers' table, whose rows are counted for minors (default: every table with birth dates "
        "or resident ID numbers)",
    )
    draft = sub.add_parser(
        "init",
        help="write a draft company manifest for a database",
        description="Inventory and classify (a sample of) the database at SOURCE_URL (a SQLAlchemy URL), find "
        "its links, and write a draft manifest: the subject table (candidates ranked in comments), who "
        "receives the notices, linked tables with their evidence, tables that look like accounting records "
        "under retain (law and years left to fill in), and every undecided personal column. Placeholders start "
        "with TODO. Names and counts only: no value from the database is written.",
    )
    draft.add_argument("source_url", metavar="SOURCE_URL")
    draft.add_argument("--out", metavar="FILE", help="write the draft here (default: standard output)")
    draft.add_argument("--source-id", default="source", help="the source's id in the manifest (source)")
    draft.add_argument("--sample-size", type=int, default=1000, help="rows read per table to classify (1000)")
    backup = sub.add_parser(
        "backup",
        help="encrypted backup of a database to S3 (prints the backup id)",
        description="Back up every table of SOURCE_URL, compressed and encrypted with a fresh data key wrapped "
        "by the keyring (DEREG_KEYRING), to s3://BUCKET/PREFIX (endpoint and keys from AWS_ENDPOINT_URL, "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) under Object Lock; recorded in the compliance store "
        "(DEREG_STORE_URL). Format: docs/backup-format.md.",
    )
    backup.add_argument("source_url", metavar="SOURCE_URL")
    backup.add_argument("--to", required=True, metavar="s3://BUCKET/PREFIX")
    backup.add_argument("--company", default="cli", help="company id recorded with the backup (cli)")
    backup.add_argument(
        "--retention-days", type=_days(1), default=3650, help="Object Lock retention, at least 1 (3650)"
    )
    backup.add_argument("--no-object-lock", action="store_true", help="accept a bucket without Object Lock")
    catalog = sub.add_parser("catalog", help="the backup catalog")
    csub = catalog.add_subparsers(dest="catalog_command", required=True)
    rebuild = csub.add_parser(
        "rebuild",
        help="rebuild the catalog from the off-site store alone",
        description="Read every backup manifest under s3://BUCKET/PREFIX (and each escrowed key) into the "
        "compliance store's catalog (DEREG_STORE_URL): after losing the store, backups are listed and "
        "restorable again. Backups without an escrowed key were crypto-shredded and are listed as such.",
    )
    rebuild.add_argument("--from", required=True, metavar="s3://BUCKET/PREFIX")
    shred = sub.add_parser(
        "shred",
        help="crypto-shred a backup whose retention has ended (destroy every copy of its key)",
        description="Destroy the wrapped data key of BACKUP_ID in the compliance store and every version of its "
        "escrow copy in s3://BUCKET/PREFIX/_escrow: the locked ciphertext can then never be decrypted. Refused "
        "while the backup's retention runs.",
    )
    shred.add_argument("backup_id", metavar="BACKUP_ID")
    shred.add_argument("--from", required=True, metavar="s3://BUCKET/PREFIX")
    shred.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    one = sub.add_parser(
        "shred-subject",
        help="crypto-shred one customer inside backups that are still locked (per-subject keys)",
        description="Destroy the key of one subject (the subject table's key value as text, e.g. 42) in every "
        "backup of the company that has per-subject keys (format version 5): its key set in the compliance "
        "store and every escrow version. A restore then gives that subject's personal columns as NULL (or "
        "a marker) and every other row as backed up. Writes a ledger entry and a signed certificate. A "
        "ref that matches nothing, or backups without per-subject keys, are refused with nothing changed.",
    )
    one.add_argument("--company", required=True, metavar="ID")
    one.add_argument("--subject-ref", required=True, metavar="REF")
    one.add_argument(
        "--from",
        metavar="s3://BUCKET/PREFIX",
        help="only for the endpoint and credentials (default: environment)",
    )
    one.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    ans = sub.add_parser("answers", help="customers' answers to the closure notice")
    asub = ans.add_subparsers(dest="answers_command", required=True)
    imp = asub.add_parser(
        "import",
        help="import answers from a CSV file (columns email, choice)",
        description="Record customers' answers from a UTF-8 CSV whose header names email and choice (copy, "
        "transfer, delete, 1/2/3 or 副本/转移/删除). The whole file is checked first: with any bad line nothing "
        "is recorded and every problem is listed by line number.",
    )
    imp.add_argument("file", metavar="FILE.csv")
    rep = asub.add_parser(
        "replies",
        help="record the choices in replies to the notices (.eml files, folders, mbox)",
        description="Match each reply to its notice by In-Reply-To/References and read the customer's own "
        "lines for one choice; replies without a single clear choice are listed for a person to read.",
    )
    rep.add_argument("paths", nargs="+", metavar="PATH")
    waive = asub.add_parser("waive", help="waive a copy or transfer request, with a reason (ledger)")
    who = waive.add_mutually_exclusive_group(required=True)
    who.add_argument("--email", help="the customer's address (hashed, never stored)")
    who.add_argument("--ref", help="the recipient reference from `dereg answers status`")
    waive.add_argument("--reason", required=True)
    waive.add_argument("--by", required=True, help="who waives it (goes in the ledger)")
    status = asub.add_parser("status", help="answer counts and open requests of a run")
    for p in (imp, rep, waive, status):
        p.add_argument("--company", required=True, help="company id")
        p.add_argument("--run", required=True, help="closure run id (Airflow dag run id)")
    notices = sub.add_parser("notices", help="closure notices whose outcome a killed task did not record")
    nsub = notices.add_subparsers(dest="notices_command", required=True)
    unc = nsub.add_parser("unconfirmed", help="Message-IDs of notices marked sending with no outcome")
    res = nsub.add_parser(
        "resolve",
        help="record what the relay's log says about unconfirmed notices",
        description="Mark unconfirmed notices (see `dereg notices unconfirmed`) as delivered, or as not "
        "delivered so that the next run of notify_customers sends them.",
    )
    verdict = res.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--delivered", action="store_true", help="the relay accepted them: record as sent")
    verdict.add_argument("--not-delivered", action="store_true", help="the relay never got them: send again")
    res.add_argument("message_ids", nargs="+", metavar="MESSAGE_ID")
    for p in (unc, res):
        p.add_argument("--company", required=True, help="company id")
        p.add_argument("--run", required=True, help="closure run id (Airflow dag run id)")
    copies = sub.add_parser("copies", help="customers' downloadable copies")
    csub2 = copies.add_subparsers(dest="copies_command", required=True)
    csub2.add_parser("purge", help="delete every copy whose link has expired")
    schema = sub.add_parser(
        "manifest-schema",
        help="print the JSON Schema of a company manifest (docs/manifest.schema.json)",
    )
    schema.add_argument("--out", metavar="PATH", help="write it to PATH instead of printing it")
    restore = sub.add_parser(
        "restore",
        help="restore a backup and verify it (exit 1 on any mismatch)",
        description="Restore BACKUP_ID from s3://BUCKET/PREFIX into TARGET_URL (default: a scratch copy, removed "
        "afterwards: a scratch schema on --scratch-url for a PostgreSQL backup, else a SQLite file) and compare every table's row count and content hash with the backup's manifest. "
        "Works from the off-site store alone when the compliance store does not know the backup.",
    )
    restore.add_argument("backup_id", metavar="BACKUP_ID")
    restore.add_argument("--from", required=True, metavar="s3://BUCKET/PREFIX")
    restore.add_argument(
        "--into",
        metavar="TARGET_URL",
        help="an empty database to restore into and keep (default: a scratch copy). A format 4 backup rebuilds "
        "the source's schema there (tables, types, keys, indexes, views, triggers) when it is the same kind of "
        "database; older backups restore data-only and say so. Refused, with nothing created, when the target "
        "already has one of the tables; undone when anything fails",
    )
    restore.add_argument(
        "--scratch-url",
        metavar="PG_URL",
        help="PostgreSQL server for the scratch copy of a PostgreSQL backup: a new schema, dropped afterwards "
        "(default: $DEREG_SCRATCH_PG_URL; without either, or when that server cannot be used, scratch SQLite)",
    )
    restore.add_argument(
        "--verify", action="store_true", help="compare counts and content hashes (always done)"
    )
    restore.add_argument(
        "--full-check",
        action="store_true",
        help="with --into a PostgreSQL database: read every restored table back whole and compare its "
        "hash with the backup's (slower; by default each table is checked by the bytes loaded, the "
        "server's row count and its first and last rows read back, see docs/backup-format.md)",
    )

    scan.add_argument(
        "--closure-date",
        type=_iso_date,
        help="date on which ages are computed (default: today)",
    )
    return parser


def _days(least: int):
    """An argparse type: a whole number of days, at least `least`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{value} days: give at least {least}")
        return value

    return parse


def _iso_date(text: str):
    import datetime as dt

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sub = {
        "keyring": "keyring_command",
        "catalog": "catalog_command",
        "answers": "answers_command",
        "copies": "copies_command",
        "notices": "notices_command",
    }.get(args.command)
    name = args.command + (f" {getattr(args, sub)}" if sub else "")
    import gc

    collecting = gc.isenabled()
    if name in _LONG_LIVED_IMPORTS:
        gc.disable()  # until `_freeze_imports`
    try:
        return _run(name, args)
    finally:
        if name in _LONG_LIVED_IMPORTS:
            gc.unfreeze()  # as it was (e.g. for a test that runs several commands in one process)
        (gc.enable if collecting else gc.disable)()


def _run(name: str, args) -> int:
    from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

    from dereg.redact import database_error, redact

    try:
        return COMMANDS[name](args)
    except DeregError as exc:
        print(f"dereg: error: {exc}", file=sys.stderr)
        return 2
    except (OperationalError, ArgumentError) as exc:
        if getattr(exc, "statement", None) is None:  # connecting: the message names host and role
            cause = redact(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0])
        else:  # a statement failed: its message may quote a row
            cause = database_error(exc)
        print(
            f"dereg: error: cannot use the database: {cause}. Check the URL given (--store, "
            "DEREG_STORE_URL, or the source URL), that the server runs and that the role may connect",
            file=sys.stderr,
        )
        return 2
    except DBAPIError as exc:
        print(f"dereg: error: the database refused a statement: {database_error(exc)}", file=sys.stderr)
        return 2


def run() -> None:
    """The `dereg` command: `main`, then out of the process at once. Tearing the interpreter down
    (freeing every module and object of SQLAlchemy, botocore and the rest, one by one) takes a few
    tenths of a second after the work is done and everything is flushed, stored and closed; no
    thread is left. Connections still in a pool (the compliance store's) are idle and closed by the
    operating system, as at any end of a process. With a thread still running (none should be), or
    an exception, Python exits as usual. The cyclic garbage collector runs less often than Python's
    default (every 700 allocations): imports and rows make objects by the hundred thousand and
    hardly any cycles."""
    import gc
    import os
    import threading

    gc.set_threshold(20_000, 50, 50)
    code = main()
    if threading.active_count() > 1 or not isinstance(code, int):
        raise SystemExit(code)
    import logging

    logging.shutdown()  # what Python's own exit would do first: flush and close the log handlers
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
