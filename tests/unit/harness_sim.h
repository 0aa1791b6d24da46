/* Test harness shared by the simulator tests: the edge preset and a
 * simulator of a config, each stopping the test binary with the library's
 * message when the set-up itself fails (that is not a test result). */
#ifndef POLYMORPH_HARNESS_SIM_H
#define POLYMORPH_HARNESS_SIM_H

#include "polymorph/config.h"
#include "polymorph/sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline pm_config edge(void)
{
    pm_config cfg;
    pm_error err;
    memset(&cfg, 0, sizeof cfg);
    if (pm_config_preset("edge", &cfg, &err)) {
        fprintf(stderr, "edge preset: %s\n", err.message);
        exit(2);
    }
    return cfg;
}

static inline pm_sim *make_sim(const pm_config *cfg)
{
    pm_sim *sim = NULL;
    pm_error err;
    if (pm_sim_create(cfg, &sim, &err)) {
        fprintf(stderr, "pm_sim_create: %s\n", err.message);
        exit(2);
    }
    return sim;
}

#endif
