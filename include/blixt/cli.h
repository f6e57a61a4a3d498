/* blixt/cli.h - the `blixt` command line (Lightning's LightningCLI).
 *
 *   blixt fit|validate|test|predict --config cfg.yaml [--key.path=value ...]
 *
 * The config has LightningCLI's sections: seed_everything, trainer (every
 * Trainer flag; callbacks and logger as lists of class_path + init_args),
 * model, data, optimizer, lr_scheduler, ckpt_path. See docs/cli.md. */
#ifndef BLIXT_CLI_H
#define BLIXT_CLI_H

#include "core.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Runs the command line argv[0..argc) (argv[0] is the program name).
 * Config files (--config, several merge in order), then dotted overrides in
 * argv order, are resolved against the registry of buildable classes; every
 * object is built before anything is written, so a bad config fails with
 * one message naming the key, the value and what was expected, and leaves
 * no files. --print_config writes the resolved config to `out` and runs
 * nothing; --help writes the usage. Progress, the model summary and
 * results go to stdout. Errors: BX_ERR_INVALID (bad command line or config,
 * message as above), BX_ERR_IO / BX_ERR_FORMAT (config or data files), and
 * whatever the run itself reports. */
bx_status bx_cli_run(int argc, char **argv, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
