#!/usr/bin/env bash
# The toy length-generalization study (issue 10), stage by stage; every setting lives in data/profiles or below.
# Run from the repository root on one GPU:  bash nbs/experiments/toy_study.sh STAGE [...]
#   data   the decomposers' training set: 20,000 long captions of 2-6 objects (training phrasings, 64 px)
#   train  lpd-train --profile data/profiles/toy_decomposer.yaml into runs/toy-study/NAME (resumes from its latest
#          checkpoint), e.g. `train n4` and `train n1 --num_components 1 --num_tokens 512`
#   eval   lpd-eval of the base (full prompt, leading sentences, sentence split) and of the named decomposers on
#          held-out long prompts of 2-9 objects: 240 prompts x 3 seeds in the training phrasings, 240 x 1 in the
#          eval phrasings; one process per method, in parallel; results in runs/toy-study/eval/<method>-<phrasing>
#   shared NAME...  the named decomposers with --negative_branch shared (training phrasings, 3 seeds)
#   compiled NAME... the same with --compile (the transformer's blocks compiled)
#   fp8 NAME...      the same with --compile --fp8 (fp8 matmuls in the blocks, torchao; H100 and later)
#   every2 NAME...   --negative_branch shared --negative_every 2 (the unconditional pass every other step)
#   fastest NAME...  all of them but every2: --compile --fp8 --fuse_qkv --cuda_graphs (H100 and later)
#   fastest_every2 NAME...  all of them: fastest's flags and --negative_every 2
#   fastest_every2_late NAME...  the same, the pass at every step in the first half of the steps
# Issue 26, composition on the open-world toy:
#   toy_open [flags]  fine-tune the closed-world toy on open-world captions (data/profiles/toy_sd3_open.yaml)
#   rows NAME...      rows of the composition study (ROWS below) on MODEL, one process each, in parallel:
#                     PHRASING=train (3 seeds, the default) or eval (1 seed); SUBLEN = T5 tokens of each split or
#                     oracle sub-prompt (512); TAG prefixes the folders (closed- for the closed-world control)
#   open_study        all of issue 26's open-world runs on one GPU, in parallel: open_decomposers then decomposer_rows
#                     of both, every row of ROWS in the training phrasings (3 seeds) and the main ones in the eval
#                     phrasings (1 seed), split and oracle sub-prompts at SUBLEN=64 T5 tokens
#   open_decomposers  the decomposers' data (OPEN_SCENES=10000), then in parallel n4-open (K 4 resampler, T5-only
#                     components, sum rule) and the embedded default t9-objects-long (ROUTES), STEPS=500 each
#   decomposer_rows NAME...  each decomposer's row in the training phrasings (3 seeds) and the eval phrasings (1 seed)
# Issue 27, decomposers taught to route (lpd.routing), on the open-world toy; K 4 / 9, T5-only components, sum rule:
#   route [NAME...]   the decomposers' data (OPEN_SCENES=10000), then the named runs of ROUTES in parallel (STEPS=400,
#                     held-out judging of 32 prompts every 100 steps), each followed by its row (training phrasings,
#                     SEEDS=0,1,2); default: every run of ROUTES. MODEL= another base and TAG= a prefix of the
#                     runs' names, as in rows (TAG=closed- with the closed-world toy: the control's rows)
#   pack OUT   what the report needs, without images, as OUT/toy-study.tar.* (parts of 15 MB: the GPU lease's limit)
#   unpack DIR the parts in DIR -> reports/toy-study/{results,decomposers}
set -euo pipefail
RUN=runs/toy-study
MODEL=${MODEL:-data/toy-sd3}
PY=${PYTHON:-python}  # the lpd-* commands as modules: the GPU image has no console scripts
SCENES=${SCENES:-20000} PROMPTS=${PROMPTS:-240}  # smaller only for a smoke test
stage=${1:?usage: toy_study.sh data|train NAME [flags]|eval [NAME...]|toy_open [flags]|rows NAME...|open_study|open_decomposers|decomposer_rows NAME...|route [NAME...]|shared NAME...|compiled NAME...|fp8 NAME...|every2 NAME...|fastest NAME...|fastest_every2 NAME...|fastest_every2_late NAME...|pack OUT|unpack DIR}; shift

common=(--pretrained_model_name_or_path $MODEL --shapes_objects 2 9 --num_inference_steps 20 --height 64 --width 64
        --batch_size $PROMPTS --seed 1)
one() {  # lpd-eval of one method: NAME PHRASING SEEDS [flags] -> $RUN/eval/NAME-PHRASING
  local method=$1 phrasing=$2 seeds=$3; shift 3
  $PY -m lpd.evaluate "${common[@]}" --shapes_eval $PROMPTS --shapes_phrasing "$phrasing" --seeds "$seeds" \
    --output_dir $RUN/eval/$method-$phrasing "$@" > $RUN/eval/$method-$phrasing.log 2>&1
}

declare -A ROWS=(  # name -> lpd-eval flags; split and oracle rows compose T5-only components, sum rule, w 2 unless said
  [whole]="--baseline full" [leading]="--baseline leading --leading_tokens 64"
  [split4-prompt-mean]="--baseline split --split_components 4 --component_clip prompt --composition mean"
  [split4]="--baseline split --split_components 4" [split6]="--baseline split --split_components 6"
  [sentences]="--baseline split" [sentences-w1]="--baseline split --guidance_scale 1"
  [sentences-w3]="--baseline split --guidance_scale 3" [sentences-prompt]="--baseline split --component_clip prompt"
  [sentences-own]="--baseline split --component_clip own"
  [sentences-prompt-mean]="--baseline split --component_clip prompt --composition mean"
  [objects]="--baseline oracle_objects" [objects-prompt]="--baseline oracle_objects --component_clip prompt"
  [objects-mean]="--baseline oracle_objects --composition mean" [pairs]="--baseline oracle_pairs"
  [pairs-prompt-mean]="--baseline oracle_pairs --component_clip prompt --composition mean"
  [whole-t5]="--baseline split --split_components 1" [whole-t5-w1]="--baseline split --split_components 1 --guidance_scale 1")

WIDE="--decomposer_heads 4 --decomposer_attention_mask --learning_rate 1e-3"
ROUTER="--decomposer_kind router --num_tokens 512 --decomposer_attention_mask --decomposer_context_kernel 15
        --learning_rate 1e-3"
declare -A ROUTES=(  # name -> lpd-train flags over toy_decomposer.yaml (K 4 unless said)
  [r4-objects]="--route_targets objects --route_weight 10" [r4-objects-w1]="--route_targets objects"
  [r9-objects]="--num_components 9 --route_targets objects --route_weight 10"
  [r4-sentences]="--route_targets sentences --route_weight 10" [d4-diversity]="--diversity_weight 0.1"
  [r9-objects-t5]="--num_components 9 --route_targets objects --route_weight 10 --route_t5_weight 1"
  [r9-t5]="--num_components 9 --route_targets objects --route_weight 0 --route_t5_weight 1"
  [r4-sentences-t5]="--route_targets sentences --route_weight 10 --route_t5_weight 1"
  # wide heads (4 of 32 dimensions instead of 32 of 4), T5 padding masked, 1e-3: what the CPU probe found to split
  [w4-composite]="$WIDE" [w4-objects]="$WIDE --route_targets objects --route_weight 10"
  [w9-objects]="$WIDE --num_components 9 --route_targets objects --route_weight 10"
  [w9-t5]="$WIDE --num_components 9 --route_targets objects --route_weight 0 --route_t5_weight 1"
  [w9-t5-objects]="$WIDE --num_components 9 --route_targets objects --route_weight 10 --ckpt $RUN/w9-t5"
  [w9-objects-more]="$WIDE --num_components 9 --route_targets objects --route_weight 10 --ckpt $RUN/w9-objects"
  [w4-sentences]="$WIDE --route_targets sentences --route_weight 10"
  # + lpd's token context (two convolutions of 9 over the T5 tokens): 0.80 routing accuracy in the probe
  [c4-composite]="$WIDE --decomposer_context_kernel 9"
  [c9-objects]="$WIDE --decomposer_context_kernel 9 --num_components 9 --route_targets objects --route_weight 10"
  [c9-both]="$WIDE --decomposer_context_kernel 9 --num_components 9 --route_targets objects --route_weight 10
             --route_t5_weight 1"
  [c9-t5]="$WIDE --decomposer_context_kernel 9 --num_components 9 --route_targets objects --route_weight 0
           --route_t5_weight 1"
  # lpd's token router (each T5 token to one component, the rest the empty prompt's states), taught per token
  [t9-composite]="$ROUTER --num_components 9"
  [t9-objects]="$ROUTER --num_components 9 --route_targets objects --route_weight 0 --route_token_weight 1"
  [t4-sentences]="$ROUTER --route_targets sentences --route_weight 0 --route_token_weight 1"
  [t9-objects-long]="$ROUTER --num_components 9 --route_targets objects --route_weight 0 --route_token_weight 1"
  [t6-objects]="$ROUTER --num_components 6 --route_targets objects --route_weight 0 --route_token_weight 1"
  [t4-objects]="$ROUTER --route_targets objects --route_weight 0 --route_token_weight 1"
  [t9-objects-noctx]="${ROUTER/--decomposer_context_kernel 15/} --num_components 9 --route_targets objects
                      --route_weight 0 --route_token_weight 1"
  [t1-objects]="$ROUTER --num_components 1 --route_targets objects --route_weight 0 --route_token_weight 1"
  [t2-objects]="$ROUTER --num_components 2 --route_targets objects --route_weight 0 --route_token_weight 1"
  [t9-objects-div]="$ROUTER --num_components 9 --route_targets objects --route_weight 0 --route_token_weight 1
                    --diversity_weight 0.1"
  # the composite alone, distilled toward the sentence composite or the per-object oracle's (no per-component target)
  [t9-kd-sentences]="$ROUTER --num_components 9 --precondition_outputs 2 --kd_teacher sentences"
  [t9-kd-objects]="$ROUTER --num_components 9 --precondition_outputs 2 --kd_teacher objects"
  [t9-kd-sentences-long]="$ROUTER --num_components 9 --precondition_outputs 2 --kd_teacher sentences")

case "$stage" in
route)
  mkdir -p $RUN/eval
  [ -f runs/shapes-long6/captions.jsonl ] || SCENES=${OPEN_SCENES:-10000} bash $0 data > $RUN/data.log 2>&1
  names=("$@"); [ ${#names[@]} -gt 0 ] || names=("${!ROUTES[@]}")
  for name in "${names[@]}"; do
    run=${TAG:-}$name
    (bash $0 train "$run" --pretrained_model_name_or_path $MODEL --component_clip empty --composition sum \
       ${ROUTES[$name]:?unknown run $name} --max_train_steps ${STEPS:-400} --checkpointing_steps 200 \
       --validation_steps ${EVERY:-100} --judge_prompts 32 > $RUN/$run.log 2>&1 \
       && one "$run" train ${SEEDS:-0,1,2} --decomposer_ckpt $RUN/$run) &
  done
  wait
  ;;
toy_open)
  exec $PY -m lpd.toy sd3 data/profiles/toy_sd3_open.yaml "$@"
  ;;
open_study)
  export SUBLEN=${SUBLEN:-64}
  (bash $0 open_decomposers && bash $0 decomposer_rows n4-open t9-objects-long) &
  bash $0 rows "${!ROWS[@]}" &
  PHRASING=eval bash $0 rows whole leading sentences objects pairs &
  wait
  ;;
open_decomposers)
  mkdir -p $RUN
  [ -f runs/shapes-long6/captions.jsonl ] || SCENES=${OPEN_SCENES:-10000} bash $0 data > $RUN/data.log 2>&1
  pids=()
  for name in n4-open t9-objects-long; do
    flags=$([ $name = n4-open ] && echo "" || echo "${ROUTES[$name]} --validation_steps 100 --judge_prompts 32")
    bash $0 train $name --pretrained_model_name_or_path $MODEL --component_clip empty --composition sum \
      --max_train_steps ${STEPS:-500} --checkpointing_steps 250 $flags > $RUN/$name.log 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait $pid || { echo "a training failed: see $RUN/*.log" >&2; exit 1; }; done
  ;;
decomposer_rows)
  mkdir -p $RUN/eval
  for name in "$@"; do
    one "$name" train 0,1,2 --decomposer_ckpt $RUN/$name & one "$name" eval 0 --decomposer_ckpt $RUN/$name &
  done
  wait
  ;;
rows)
  phrasing=${PHRASING:-train}
  seeds=$([ $phrasing = train ] && echo 0,1,2 || echo 0)
  mkdir -p $RUN/eval
  for name in "$@"; do
    flags=${ROWS[$name]:?unknown row $name}
    case "$flags" in *split*|*oracle*) flags="$flags --sub_prompt_length ${SUBLEN:-64}";; esac
    one "${TAG:-}$name" $phrasing $seeds $flags &
  done
  wait
  ;;
data)
  exec $PY -m lpd.shapes runs/shapes-long6 --num_scenes $SCENES --resolution 64 --tokenizer $MODEL/tokenizer_3 --num_objects 2 6
  ;;
train)
  name=${1:?train needs a NAME}; shift
  exec $PY -m lpd.train --profile data/profiles/toy_decomposer.yaml --output_dir $RUN/$name --resume_from_checkpoint latest "$@"
  ;;
eval)
  mkdir -p $RUN/eval
  for phrasing in train eval; do
    seeds=$([ $phrasing = train ] && echo 0,1,2 || echo 0)
    one base-full $phrasing $seeds --baseline full &
    one base-leading $phrasing $seeds --baseline leading --leading_tokens 64 &
    one base-split $phrasing $seeds --baseline split --split_components 4 &
    for name in "$@"; do
      one "$name" $phrasing $seeds --decomposer_ckpt $RUN/$name &
    done
  done
  wait
  ;;
shared|compiled|fp8|every2|fastest|fastest_every2|fastest_every2_late)  # issue 11's faster sampling on the toy (training phrasings, 3 seeds), one
  # shared unconditional pass instead of K, then: the blocks compiled, fp8 matmuls in them, that pass every other
  # step, all but that approximation together, or all of them
  declare -A extra=([shared]="" [compiled]="--compile" [fp8]="--compile --fp8" [every2]="--negative_every 2"
                    [fastest]="--compile --fp8 --fuse_qkv --cuda_graphs"
                    [fastest_every2]="--compile --fp8 --fuse_qkv --cuda_graphs --negative_every 2"
                    [fastest_every2_late]="--compile --fp8 --fuse_qkv --cuda_graphs --negative_every 2
                                           --negative_every_start 0.5")
  suffix=$([ $stage = shared ] && echo shared || echo shared-$stage)
  mkdir -p $RUN/eval
  for name in "$@"; do
    one "$name-$suffix" train 0,1,2 --decomposer_ckpt $RUN/$name --negative_branch shared ${extra[$stage]} &
  done
  wait
  ;;
pack)
  out=${1:?pack needs an output folder}
  (cd $RUN && find . \( -path './eval/*/images' -prune \) -o \( -path '*/checkpoint-*' -prune \) -o -type f \
     \( -name '*.json' -o -name '*.jsonl' -o -name '*.md' -o -name '*.log' -o -name '*.safetensors' \) -print \
     | tar cf - -T -) | split -b 15m - "$out/toy-study.tar."
  ;;
unpack)
  dir=${1:?unpack needs the folder holding toy-study.tar.*}
  tmp=$(mktemp -d) && cat "$dir"/toy-study.tar.* | tar xf - -C "$tmp"
  mkdir -p reports/toy-study/results reports/toy-study/decomposers
  cp -r "$tmp"/eval/* reports/toy-study/results/
  for d in "$tmp"/*/; do [ "$(basename "$d")" = eval ] || cp -r "$d" reports/toy-study/decomposers/; done
  rm -rf "$tmp"
  ;;
*)
  echo "unknown stage $stage" >&2; exit 2
  ;;
esac
