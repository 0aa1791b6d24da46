/* polymorph presets: list the chip presets compiled into the binary (one
 * configs/<name>.cfg each), or print one in canonical config text, which
 * `polymorph sim --config` reads back. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

const char pm_cli_presets_help[] =
    "usage: polymorph presets [NAME]\n"
    "\n"
    "Without NAME, list every built-in preset with its description. With NAME,\n"
    "print that preset as canonical config text; save it, edit it and pass it\n"
    "to `polymorph sim --config FILE` (or start a file with `base = NAME`).\n"
    "\n"
    "options:\n"
    "  -h, --help   show this help\n"
    "\n"
    "example:\n"
    "  polymorph presets\n"
    "  polymorph presets edge > my_chip.cfg\n";

int pm_cli_presets(int argc, char **argv)
{
    pm_cli_parsed p;
    if (!pm_cli_parse("presets", argc, argv, NULL, 0, &p)) return PM_EXIT_FAIL;
    if (p.help) {
        fputs(pm_cli_presets_help, stdout);
        return PM_EXIT_OK;
    }
    if (p.positional_count > 1) return pm_cli_fail("presets", "expected at most one preset name, got %d", p.positional_count);
    pm_error err = {0};
    pm_config cfg;
    if (p.positional_count == 1) {
        if (pm_config_preset(p.positional[0], &cfg, &err) != PM_OK) return pm_cli_fail_err("presets", &err);
        char *text = pm_config_to_text(&cfg);
        if (!text) return pm_cli_fail("presets", "%s: cannot render the config text", p.positional[0]);
        fputs(text, stdout);
        free(text);
        return PM_EXIT_OK;
    }
    for (const char *const *name = pm_config_preset_names(); *name; name++) {
        if (pm_config_preset(*name, &cfg, &err) != PM_OK) return pm_cli_fail_err("presets", &err);
        printf("%-12s %s\n", *name, cfg.description);
    }
    return PM_EXIT_OK;
}
