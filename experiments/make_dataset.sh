#!/bin/sh
# The datasets used for detection v2, from the repository root, with the real data in
# ../shared/data. Each command resumes where it stopped when run again.
#
# ds-v2: PAD-UFES-20 and ISIC 2017 lesions (each ISIC lesion drawn twice as often as a
# PAD-UFES-20 one, for more pigmented naevi, melanomas and keratoses) on iToBoS skin, with the
# tiles' annotated real moles labelled 3, tracking pairs.
set -e
mkdir -p runs
nice -n 5 synth make-dataset --lesions ../shared/data/lesions/pad-ufes-20 \
    --lesions ../shared/data/lesions/isic2017:2 --bodies ../shared/data/bodies/itobos \
    --out runs/ds-v2 --count 2000 --pairs --workers 2 --seed 0 > runs/ds-v2.log 2>&1

# ds-v2-dark: the same test split with every sample's skin shifted to Fitzpatrick V-VI.
nice -n 5 synth make-dataset --lesions ../shared/data/lesions/pad-ufes-20 \
    --lesions ../shared/data/lesions/isic2017:2 --bodies ../shared/data/bodies/itobos \
    --out runs/ds-v2-dark --count 2000 --pairs --workers 2 --seed 0 --skin-tone V-VI \
    --split test > runs/ds-v2-dark.log 2>&1
