#!/usr/bin/env bash
# One-shot `airflow-init` service of docker-compose.yaml; every other Airflow service waits for it
# to exit 0. Safe to run again: each step skips what already exists.
#   1. `airflow db migrate` on the airflow database
#   2. the users ops (triggers), approver (approves), auditor (views) and admin, with the
#      passwords from .env, for the auth manager configured in AIRFLOW__CORE__AUTH_MANAGER
#   3. Dereg's keyring (key-encryption keys, signing key, pseudonym key), if there is none
#   4. with DEREG_SEED_DEMO=1, the demo school's source database (staging only)
set -euo pipefail

for var in DEREG_OPS_PASSWORD DEREG_APPROVER_PASSWORD DEREG_AUDITOR_PASSWORD DEREG_ADMIN_PASSWORD; do
    if [[ -z "${!var:-}" ]]; then
        echo "airflow-init: $var is empty; set it in .env (see .env.example)" >&2
        exit 1
    fi
done

echo "airflow-init: migrating the metadata database"
airflow db migrate

# The same users and roles as the embedded stack (devtools/stack/embedded.py).
declare -A SIMPLE_ROLE=([ops]=user [approver]=user [auditor]=viewer [admin]=admin)
declare -A FAB_ROLE=([ops]=User [approver]=User [auditor]=Viewer [admin]=Admin)
declare -A PASSWORD=(
    [ops]="$DEREG_OPS_PASSWORD"
    [approver]="$DEREG_APPROVER_PASSWORD"
    [auditor]="$DEREG_AUDITOR_PASSWORD"
    [admin]="$DEREG_ADMIN_PASSWORD"
)

auth_manager="$(airflow config get-value core auth_manager)"
case "$auth_manager" in
*SimpleAuthManager)
    # The simple auth manager reads its users from [core] simple_auth_manager_users and their
    # passwords from this file (shared with the api-server through the airflow-auth volume).
    file="$(airflow config get-value core simple_auth_manager_passwords_file)"
    echo "airflow-init: simple auth manager, writing $file"
    DEREG_PASSWORDS_FILE="$file" python - <<'PY'
import json
import os
from pathlib import Path

users = {u: os.environ[f"DEREG_{u.upper()}_PASSWORD"] for u in ("ops", "approver", "auditor", "admin")}
path = Path(os.environ["DEREG_PASSWORDS_FILE"])
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps(users) + "\n")
path.chmod(0o660)
PY
    configured="$(airflow config get-value core simple_auth_manager_users)"
    for user in ops approver auditor admin; do
        if [[ ",$configured," != *",$user:${SIMPLE_ROLE[$user]},"* ]]; then
            echo "airflow-init: AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS ($configured) lacks $user:${SIMPLE_ROLE[$user]}" >&2
            exit 1
        fi
    done
    ;;
*FabAuthManager)
    # Needs apache-airflow-providers-fab (docs/deployment.md). Users live in the metadata database.
    echo "airflow-init: FAB auth manager, creating users"
    # `users list` prints "No data found" rather than [] while there is no user yet
    existing="$(airflow users list --output json | python -c '
import json, sys
try:
    users = json.load(sys.stdin)
except ValueError:
    users = []
print(" ".join(u["username"] for u in users))')"
    for user in ops approver auditor admin; do
        if [[ " $existing " == *" $user "* ]]; then
            echo "  $user exists, left as it is"
            continue
        fi
        airflow users create --username "$user" --role "${FAB_ROLE[$user]}" \
            --firstname "$user" --lastname "dereg" --email "$user@dereg.invalid" \
            --password "${PASSWORD[$user]}"
    done
    ;;
*)
    echo "airflow-init: auth manager $auth_manager: create ops, approver, auditor and admin yourself" >&2
    ;;
esac

if [[ -f "$DEREG_KEYRING" ]]; then
    echo "airflow-init: keyring $DEREG_KEYRING exists"
else
    python -m dereg.cli keyring init
fi

if [[ "${DEREG_SEED_DEMO:-0}" == "1" ]]; then
    demo="$DEREG_STATE_DIR/demo_academy.db"
    if [[ -f "$demo" ]]; then
        echo "airflow-init: demo source $demo exists"
    else
        # the seed is a development tool (devtools/, not in the image), mounted for this step only
        PYTHONPATH="/opt/dereg-devtools${PYTHONPATH:+:$PYTHONPATH}" python -m devtools.demo.seed --url "sqlite:///$demo"
    fi
fi
echo "airflow-init: done"
