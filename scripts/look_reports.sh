#!/usr/bin/env bash
# Render what a user opens, for a person to look at: every report.pdf under a Scipion project
# (validation reports) as PNG pages, and the protocols' forms under Xvfb.
#   bash scripts/look_reports.sh PROJECT_FOLDER OUT_FOLDER
# Needs Debian's poppler-utils (pdftoppm) and xvfb (xvfb-run): apt-get install poppler-utils xvfb
set -euo pipefail
cd "$(dirname "$0")/.."
project=$1; out=$2
mkdir -p "$out"
find "$project" -name report.pdf | while read -r pdf; do
    name=$(echo "$pdf" | sed 's|.*/Runs/||; s|/extra/report.pdf||')
    pdftoppm -r 70 -png "$pdf" "$out/$name"
done
xvfb-run -a -s "-screen 0 1400x1000x24" venv/bin/python scripts/look_forms.py "$out/forms"
ls "$out" "$out/forms"
