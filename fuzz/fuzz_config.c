/* libFuzzer target: the config parser rejects any malformed text with a
 * message; anything it accepts validates and survives to_text -> parse. */
#include "polymorph/config.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    pm_config cfg;
    memset(&cfg, 0, sizeof cfg);
    pm_error err;
    if (pm_config_parse("fuzz.cfg", text, &cfg, &err) == PM_OK) {
        if (pm_config_validate(&cfg, &err) != PM_OK) abort();
        char *canon = pm_config_to_text(&cfg);
        if (canon) {
            pm_config again;
            memset(&again, 0, sizeof again);
            if (pm_config_parse("fuzz-canon.cfg", canon, &again, &err) != PM_OK) abort();
            free(canon);
        }
    }
    free(text);
    return 0;
}
