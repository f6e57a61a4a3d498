/* blixt - the command line (LightningCLI's model):
 *
 *   blixt fit --config examples/configs/fashion_mnist_mlp.yaml --trainer.max_epochs=3
 *
 * See docs/cli.md. Exit status: 0 on success, 2 for a bad command line or
 * config, 1 when the run fails. */
#include "blixt/cli.h"

#include <stdio.h>

int main(int argc, char **argv) {
    bx_status s = bx_cli_run(argc, argv, stdout);
    if (s == BX_OK) return 0;
    fprintf(stderr, "blixt: error: %s\n", bx_errmsg());
    return s == BX_ERR_INVALID || s == BX_ERR_FORMAT ? 2 : 1;
}
