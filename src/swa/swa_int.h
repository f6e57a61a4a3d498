/* swa_int.h - shared by the files of src/swa (weight averaging). */
#ifndef BLIXT_SWA_INT_H
#define BLIXT_SWA_INT_H

#include "blixt/swa.h"
#include "core/core_int.h"

#endif
