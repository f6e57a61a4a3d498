/* scenario.h - the conformance scenario runner (FORMAT.md): shared state of
 * main.c (scenario, trace output) and model.c (module, data, optimizer,
 * Recorder, Counter). */
#ifndef BLIXT_SCENARIO_H
#define BLIXT_SCENARIO_H

#include <blixt/callbacks.h>
#include <blixt/trainer.h>
#include <jansson.h>

typedef struct sc_layer {
    char name[64];
    int64_t in, out;
    bool bias, relu;
} sc_layer;

typedef struct sc_phase {
    json_t *sc;         /* merged scenario view for this phase (borrowed keys) */
    json_t *events;     /* trace events */
    json_t *epoch_records, *step_records, *progress_bar;
    int64_t n_training_step, n_val_runs, n_sanity_runs, n_opt_steps, n_ckpt_saves;
    int64_t val_step_calls, val_run_idx;
    bool module_hooks, callback_hooks, epoch_lrs, step_lrs, rec_requires_grad, rec_params;
    /* model */
    sc_layer layers[16];
    int nlayers;
    bx_module *root;
    bx_trainer *tr;
    json_t *counters; /* per Counter: {state_key, state, loaded} objects */
    bx_callback *qat_cb; /* the QuantizationAwareTraining callback (owned by the Trainer) */
    bool rec_fake_quant;
} sc_phase;

/* model.c */
bx_status sc_build_model(sc_phase *ph, const bx_model_ops **ops);
bx_status sc_build_data(sc_phase *ph, bx_dataset **train, bx_dataset **val);
bx_callback *sc_recorder_new(sc_phase *ph);
bx_callback *sc_counter_new(sc_phase *ph, const char *key);
void sc_event(sc_phase *ph, const char *src, const char *hook, bx_trainer *tr, int64_t batch_idx,
              const char *stage);
json_t *sc_tensor_json(const bx_tensor *t);

/* cb_misc.c: LearningRateMonitor, GradientAccumulationScheduler, LambdaCallback,
 * ProgressBarRecorder, TQDMProgressBar. build: 0 = not this file's type, 1 =
 * built (*out), -1 = construct error. after_recorder: Trainer
 * accumulate_grad_batches dict -> a scheduler appended after the Recorder.
 * trace: the lr_monitor section. */
int sc_cb_misc_build(sc_phase *ph, const char *type, json_t *args, bx_trainer_opts *o, bx_callback **out);
bx_status sc_cb_misc_after_recorder(sc_phase *ph, bx_callback **cbs, int *ncb);
void sc_cb_misc_trace(sc_phase *ph, bx_trainer *tr, json_t *P);
json_t *sc_state_json(const bx_state *s);

/* cb_es_mc.c: EarlyStopping / ModelCheckpoint from scenario args (NULL with
 * the message on bad args) and the early_stopping / model_checkpoints trace
 * sections. */
bool sc_es_mc_handles(const char *type);
bx_callback *sc_es_mc_new(const char *type, json_t *args);
void sc_es_mc_trace(bx_trainer *tr, json_t *phase);

/* cb_prune.c: ModelPruning from scenario args (NULL with the message on bad
 * args), the trace sections `pruning` / `masks_final`, and the pruning part
 * of an epoch-end record (with record.masks). */
bool sc_prune_handles(const char *type);
bx_callback *sc_prune_new(json_t *args);
void sc_prune_trace(bx_trainer *tr, json_t *phase, sc_phase *ph);
void sc_prune_epoch_record(sc_phase *ph, json_t *rec);

/* cb_swa.c: StochasticWeightAveraging from scenario args (NULL with the
 * message on bad args) and the `swa` trace section. */
bool sc_swa_handles(const char *type);
bx_callback *sc_swa_new(json_t *args);
void sc_swa_trace(bx_trainer *tr, json_t *phase);

/* cb_finetune.c: BackboneFinetuning from its scenario args (NULL + stderr
 * on a construct error). */
bool sc_cb_finetune_handles(const char *type);
bx_callback *sc_cb_finetune_new(const char *type, json_t *args);

/* cb_qat.c: QuantizationAwareTraining (NULL + stderr on a construct
 * error), epoch_records fake_quant, the qat trace section. */
bool sc_qat_handles(const char *type);
bx_callback *sc_qat_new(sc_phase *ph, json_t *args);
void sc_qat_epoch_record(sc_phase *ph, json_t *r);
void sc_qat_trace(sc_phase *ph, json_t *P, const bx_dataset *train, const bx_dataset *val);

#endif
