/* Tests for the engine configuration: presets against the figures their files
 * promise, text round trips, base inheritance, one malformed input per error
 * class with its exact place, and garbage/truncation inputs that must not crash. */
#define _POSIX_C_SOURCE 200809L
#include "polymorph/config.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <unistd.h>

/* The embedded preset files (generated from configs/). */
extern const char *const pm_preset_files[][2];

static bool near(double a, double b, double rel) { return fabs(a - b) <= rel * fabs(b); }

static bool load_preset(const char *name, pm_config *cfg)
{
    pm_error err;
    pm_error_clear(&err);
    pm_status s = pm_config_preset(name, cfg, &err);
    CHECK_MSG(s == PM_OK, "preset %s: %s", name, err.message);
    return s == PM_OK;
}

TEST(preset_names_match_embedded_files)
{
    const char *const *names = pm_config_preset_names();
    size_t n = 0;
    while (names[n]) {
        CHECK(pm_preset_files[n][0] && strcmp(names[n], pm_preset_files[n][0]) == 0);
        n++;
    }
    CHECK(pm_preset_files[n][0] == NULL);
    const char *wanted[] = {"edge", "fpga", "datacenter"};
    for (size_t w = 0; w < 3; w++) {
        bool found = false;
        for (size_t i = 0; i < n; i++) found |= strcmp(names[i], wanted[w]) == 0;
        CHECK_MSG(found, "preset %s missing", wanted[w]);
    }
    CHECK(pm_config_preset_names() == names); /* stable across calls */
}

TEST(every_preset_parses_validates_and_is_named_after_its_file)
{
    for (const char *const *p = pm_config_preset_names(); *p; p++) {
        pm_config cfg;
        if (!load_preset(*p, &cfg)) continue;
        pm_error err;
        CHECK_MSG(pm_config_validate(&cfg, &err) == PM_OK, "%s: %s", *p, err.message);
        CHECK_MSG(strcmp(cfg.name, *p) == 0, "preset file %s names itself %s", *p, cfg.name);
        CHECK(cfg.description[0] != '\0');
        /* The files state that tdp_w is their full-activity total. */
        double full = pm_config_full_activity_power_w(&cfg);
        CHECK_MSG(near(full, cfg.tdp_w, 0.02), "%s: full activity %.4f W vs tdp_w %.4f W", *p, full, cfg.tdp_w);
    }
    pm_config cfg;
    pm_error err;
    pm_error_clear(&err);
    CHECK(pm_config_preset("nosuch", &cfg, &err) == PM_ERR_INVALID);
    CHECK(strstr(err.message, "unknown preset 'nosuch'") && strstr(err.message, "edge"));
}

TEST(edge_preset_matches_architecture_brief)
{
    pm_config c;
    if (!load_preset("edge", &c)) return;
    CHECK(c.clock_mhz == 1000.0);
    CHECK(c.engines == 1);
    CHECK(c.tensor_rows == 32 && c.tensor_cols == 32);
    CHECK(c.tensor_dataflow == PM_DATAFLOW_OUTPUT_STATIONARY);
    CHECK(c.vector_lanes == 32);
    CHECK(c.lfu_count == 32 && c.lfu_slots == 4);
    CHECK(c.sram_bytes == 2u << 20);
    CHECK(c.sram_banks == 16);
    CHECK(c.accum_bytes == 256u << 10);
    CHECK(c.dram_bytes == 4ull << 30);
    CHECK(c.dram_gbps == 51.2);
    CHECK(c.dram_latency_ns == 100.0);
    CHECK(c.flags == 32);
    CHECK(c.hazard_mode == PM_HAZARD_INTERLOCK);
    /* Derived figures, written out by hand. */
    CHECK(near(pm_config_dram_bytes_per_cycle(&c), 51.2, 1e-12));
    CHECK(near(pm_config_peak_tensor_flops(&c), 2.0 * 32 * 32 * 1e9, 1e-12));
    /* Energies in the plausible 7 nm window the brief names. */
    CHECK(c.energy_dram_pj_per_byte >= 10 && c.energy_dram_pj_per_byte <= 20);
    CHECK(c.energy_sram_pj_per_byte >= 0.1 && c.energy_sram_pj_per_byte <= 0.5);
    CHECK(c.energy_tensor_pj_per_mac >= 0.2 && c.energy_tensor_pj_per_mac <= 0.5);
}

TEST(fpga_preset_power_adds_up_to_4_5_watts)
{
    pm_config c;
    if (!load_preset("fpga", &c)) return;
    CHECK(c.tensor_rows * c.tensor_cols == 64);
    CHECK(c.clock_mhz == 333.0);
    CHECK(c.sram_bytes_per_cycle == 32);  /* 256-bit data path */
    CHECK(c.vector_lanes * 4 == 32);      /* fp32 lanes fill the same 256 bits */
    CHECK(c.sram_bytes == 1u << 20);
    CHECK(near(c.dram_gbps, 2666e6 * 4 / 1e9, 1e-12)); /* DDR4-2666 x 32 bits */
    CHECK(c.tdp_w == 4.5);
    /* Component by component, as the file's comment lays it out. */
    double hz = 333e6;
    double watts = 64 * c.energy_tensor_pj_per_mac * 1e-12 * hz + 32 * c.energy_sram_pj_per_byte * 1e-12 * hz +
                   8 * c.energy_vector_pj_per_elem * 1e-12 * hz + 8 * c.energy_lfu_pj_per_eval * 1e-12 * hz +
                   c.energy_ctrl_pj_per_insn * 1e-12 * hz + 10.664e9 * c.energy_dram_pj_per_byte * 1e-12 +
                   c.static_power_w;
    CHECK_MSG(near(watts, 4.5, 0.01), "fpga totals %.4f W", watts);
    CHECK(near(pm_config_full_activity_power_w(&c), watts, 1e-12));
    CHECK(near(pm_config_dram_bytes_per_cycle(&c), 10.664e9 / 333e6, 1e-12));
}

TEST(datacenter_preset_shape)
{
    pm_config c;
    if (!load_preset("datacenter", &c)) return;
    CHECK(c.engines == 8);
    CHECK(c.tensor_rows == 128 && c.tensor_cols == 128);
    CHECK(c.clock_mhz == 1500.0);
    CHECK(c.vector_lanes == 64);
    CHECK(c.sram_bytes >= (24ull << 20) && c.sram_bytes <= (32ull << 20));
    CHECK(c.dram_bytes >= (96ull << 30) && c.dram_bytes <= (128ull << 30));
    CHECK(c.dram_gbps > 3000 && c.dram_gbps < 4000);
    CHECK(near(pm_config_peak_tensor_flops(&c), 2.0 * 128 * 128 * 1.5e9 * 8, 1e-12));
}

static bool round_trips(const pm_config *cfg, const char *what)
{
    char *text = pm_config_to_text(cfg);
    CHECK_MSG(text != NULL, "%s: to_text failed", what);
    if (!text) return false;
    pm_config back;
    pm_config_init_unset(&back);
    pm_error err;
    pm_error_clear(&err);
    pm_status s = pm_config_parse("roundtrip.cfg", text, &back, &err);
    CHECK_MSG(s == PM_OK, "%s: canonical text does not parse: %s\n%s", what, err.message, text);
    bool same = s == PM_OK && pm_config_equal(cfg, &back);
    CHECK_MSG(same, "%s: round trip changed the config\n%s", what, text);
    char *again = s == PM_OK ? pm_config_to_text(&back) : NULL;
    CHECK_MSG(again && strcmp(text, again) == 0, "%s: canonical text not stable", what);
    free(again);
    free(text);
    return same;
}

TEST(to_text_round_trips_every_preset)
{
    for (const char *const *p = pm_config_preset_names(); *p; p++) {
        pm_config cfg;
        if (load_preset(*p, &cfg)) round_trips(&cfg, *p);
    }
}

TEST(to_text_round_trips_awkward_values)
{
    pm_config c;
    if (!load_preset("edge", &c)) return;
    snprintf(c.name, sizeof c.name, "odd-1.x+y");
    snprintf(c.description, sizeof c.description, "has # and ; and = inside");
    c.clock_mhz = 1000.0 / 3.0;                /* needs all 17 digits */
    c.dram_gbps = 0.1;
    c.energy_ctrl_pj_per_insn = 1e-300;
    c.energy_sram_pj_per_byte = 0;
    c.sram_bytes = 3 * 256 * 1001;             /* not a whole KiB */
    c.dram_bytes = 3ull << 30;
    c.accum_bytes = 4100 * 4 + 4096 * 4;       /* plain bytes */
    c.watchdog_instructions = (1ull << 60) - 1;
    c.tensor_dataflow = PM_DATAFLOW_WEIGHT_STATIONARY;
    c.hazard_mode = PM_HAZARD_REPORT;
    pm_error err;
    CHECK_MSG(pm_config_validate(&c, &err) == PM_OK, "%s", err.message);
    CHECK(round_trips(&c, "awkward"));
    char *text = pm_config_to_text(&c);
    CHECK(text && strstr(text, "bytes = 3 GiB\n") && strstr(text, "bytes = 768768\n") &&
          strstr(text, "dataflow = ws\n") && strstr(text, "hazards = report\n"));
    free(text);
}

TEST(base_inherits_and_overrides)
{
    pm_config edge, c;
    if (!load_preset("edge", &edge)) return;
    pm_config_init_unset(&c);
    pm_error err;
    pm_error_clear(&err);
    const char *text = "# four edge engines\nbase = edge\nname = quad\n\n[chip]\nengines = 4 ; more\n";
    CHECK_MSG(pm_config_parse("quad.cfg", text, &c, &err) == PM_OK, "%s", err.message);
    CHECK(strcmp(c.name, "quad") == 0);
    CHECK(c.description[0] == '\0'); /* identity is not inherited */
    CHECK(c.engines == 4);
    pm_config expect = edge;
    expect.engines = 4;
    snprintf(expect.name, sizeof expect.name, "quad");
    memset(expect.description, 0, sizeof expect.description);
    CHECK(pm_config_equal(&c, &expect));

    /* No name: the file's base name stands in. */
    pm_config_init_unset(&c);
    CHECK_MSG(pm_config_parse("dir/slow-edge.cfg", "base = fpga\n[chip]\nclock_mhz = 100\n", &c, &err) == PM_OK,
              "%s", err.message);
    CHECK(strcmp(c.name, "slow-edge") == 0 && c.clock_mhz == 100.0 && c.tensor_rows == 8);

    /* Without base, parse keeps the caller's values (the header's contract). */
    c = edge;
    CHECK(pm_config_parse("patch", "[dram]\nlatency_ns = 0\n", &c, &err) == PM_OK);
    CHECK(c.dram_latency_ns == 0.0 && c.clock_mhz == 1000.0 && strcmp(c.name, "edge") == 0);
}

TEST(every_field_missing_is_named)
{
    pm_config edge;
    if (!load_preset("edge", &edge)) return;
    char *text = pm_config_to_text(&edge);
    if (!text) return;
    /* Drop each key line in turn (from an all-unset start): validation must
     * name exactly that field. */
    size_t dropped = 0;
    char section[32] = "";
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line + 1) : strlen(line);
        if (line[0] == '[') {
            sscanf(line, "[%31[a-z]]", section);
        } else if (section[0] && memchr(line, '=', len)) {
            char key[64] = "";
            sscanf(line, "%63[a-z_]", key);
            size_t pre = (size_t)(line - text);
            char *cut = malloc(strlen(text) + 1);
            if (!cut) break;
            memcpy(cut, text, pre);
            strcpy(cut + pre, line + len);
            pm_config c;
            pm_config_init_unset(&c);
            pm_error err;
            pm_error_clear(&err);
            char want[128];
            snprintf(want, sizeof want, "cut.cfg: %s.%s: missing", section, key);
            CHECK_MSG(pm_config_parse("cut.cfg", cut, &c, &err) == PM_ERR_CONFIG &&
                          strncmp(err.message, want, strlen(want)) == 0,
                      "want '%s', got '%s'", want, err.message);
            free(cut);
            dropped++;
        }
        line += len;
    }
    CHECK(dropped == 34);
    free(text);
}

typedef struct bad_case {
    const char *text;
    pm_status status;
    const char *prefix; /* exact start of the message */
    const char *reason; /* fragment somewhere after it */
} bad_case;

/* Each starts from `base = edge` so that only the one fault is present. */
static const bad_case bad_cases[] = {
    {"base = edge\n[chips]\n", PM_ERR_PARSE, "t.cfg:2: [chips]: ", "unknown section"},
    {"base = edge\n[chip]\nclok_mhz = 1\n", PM_ERR_PARSE, "t.cfg:3: chip.clok_mhz: ", "unknown key"},
    {"base = edge\n[chip]\nengines = 2\n\nengines = 3\n", PM_ERR_PARSE, "t.cfg:5: chip.engines: ",
     "duplicate key (first set on line 3)"},
    {"base = edge\n[chip]\nengines = 2\n[tensor]\nrows=4\n[chip]\nengines = 2\n", PM_ERR_PARSE,
     "t.cfg:7: chip.engines: ", "duplicate key"},
    {"base = edge\n[chip]\nclock_mhz = 1e3x\n", PM_ERR_PARSE, "t.cfg:3: chip.clock_mhz: ", "bad number '1e3x'"},
    {"base = edge\n[chip]\nclock_mhz = nan\n", PM_ERR_PARSE, "t.cfg:3: chip.clock_mhz: ", "bad number"},
    {"base = edge\n[chip]\nclock_mhz = inf\n", PM_ERR_PARSE, "t.cfg:3: chip.clock_mhz: ", "bad number"},
    {"base = edge\n[chip]\nclock_mhz = 0x10\n", PM_ERR_PARSE, "t.cfg:3: chip.clock_mhz: ", "trailing"},
    {"base = edge\n[chip]\nclock_mhz = 1e999\n", PM_ERR_PARSE, "t.cfg:3: chip.clock_mhz: ", "too large"},
    {"base = edge\n[chip]\nclock_mhz = 1e\n", PM_ERR_PARSE, "t.cfg:3: chip.clock_mhz: ", "malformed exponent"},
    {"base = edge\n[chip]\nclock_mhz = 0\n", PM_ERR_PARSE, "t.cfg:3: chip.clock_mhz: ", "out of range"},
    {"base = edge\n[chip]\nclock_mhz = 10000.5\n", PM_ERR_PARSE, "t.cfg:3: chip.clock_mhz: ", "out of range"},
    {"base = edge\n[chip]\nengines = 65\n", PM_ERR_PARSE, "t.cfg:3: chip.engines: ",
     "65 is out of range (must be 1..64)"},
    {"base = edge\n[chip]\nengines = -1\n", PM_ERR_PARSE, "t.cfg:3: chip.engines: ", "out of range"},
    {"base = edge\n[chip]\nengines = 4x\n", PM_ERR_PARSE, "t.cfg:3: chip.engines: ", "bad number '4x'"},
    {"base = edge\n[chip]\nengines = 1.5\n", PM_ERR_PARSE, "t.cfg:3: chip.engines: ", "bad number"},
    {"base = edge\n[chip]\nengines = 99999999999999999999999\n", PM_ERR_PARSE, "t.cfg:3: chip.engines: ",
     "too large"},
    {"base = edge\n[chip]\nengines =\n", PM_ERR_PARSE, "t.cfg:3: chip.engines: ", "empty value"},
    {"base = edge\n[chip]\nflags = 0\n", PM_ERR_PARSE, "t.cfg:3: chip.flags: ", "out of range"},
    {"base = edge\n[sram]\nbytes = 3 TiB\n", PM_ERR_PARSE, "t.cfg:3: sram.bytes: ", "unknown size suffix"},
    {"base = edge\n[sram]\nbytes = 2 GiB\n", PM_ERR_PARSE, "t.cfg:3: sram.bytes: ", "out of range"},
    {"base = edge\n[sram]\nbytes = 99999999999999 GiB\n", PM_ERR_PARSE, "t.cfg:3: sram.bytes: ", "too large"},
    {"base = edge\n[vector]\nlanes = 12\n", PM_ERR_PARSE, "t.cfg:3: vector.lanes: ", "not a power of two"},
    {"base = edge\n[lfu]\nslots = 9\n", PM_ERR_PARSE, "t.cfg:3: lfu.slots: ", "out of range (must be 1..8)"},
    {"base = edge\n[tensor]\ndataflow = xs\n", PM_ERR_PARSE, "t.cfg:3: tensor.dataflow: ", "not one of os | ws"},
    {"base = edge\n[control]\nhazards = ignore\n", PM_ERR_PARSE, "t.cfg:3: control.hazards: ", "interlock"},
    {"base = edge\n[control]\nimem_words = 15\n", PM_ERR_PARSE, "t.cfg:3: control.imem_words: ", "out of range"},
    {"base = edge\n[energy]\nsram_pj_per_byte = -0.5\n", PM_ERR_PARSE, "t.cfg:3: energy.sram_pj_per_byte: ",
     "out of range"},
    {"base = edge\n[chip]\nclock_mhz 1000\n", PM_ERR_PARSE, "t.cfg:3: chip: ", "missing '='"},
    {"base = edge\n[chip]\n= 1000\n", PM_ERR_PARSE, "t.cfg:3: chip: ", "missing key"},
    {"base = edge\n[chip]\nClock = 1000\n", PM_ERR_PARSE, "t.cfg:3: chip: ", "bad key"},
    {"base = edge\n[chip\n", PM_ERR_PARSE, "t.cfg:2: top level: ", "without ']'"},
    {"base = edge\n[chip] x\n", PM_ERR_PARSE, "t.cfg:2: top level: ", "after the section header"},
    {"base = edge\nfoo = 1\n", PM_ERR_PARSE, "t.cfg:2: foo: ", "unknown key at top level"},
    {"name = x\nbase = edge\n", PM_ERR_PARSE, "t.cfg:2: base: ", "must come before every other key"},
    {"base = edge\nbase = fpga\n", PM_ERR_PARSE, "t.cfg:2: base: ", "must come before"},
    {"base = nosuch\n", PM_ERR_PARSE, "t.cfg:1: base: ", "unknown preset 'nosuch'"},
    {"base = edge\nname = a\nname = b\n", PM_ERR_PARSE, "t.cfg:3: name: ", "duplicate key (first set on line 2)"},
    {"base = edge\nname = bad name!\n", PM_ERR_PARSE, "t.cfg:2: name: ", "is not a name"},
    {"base = edge\nname = 0123456789012345678901234567890123456789012345678901234567890123\n", PM_ERR_PARSE,
     "t.cfg:2: name: ", "too long"},
    {"base = edge\n[chip]\nclock_mhz = 1\x01\n", PM_ERR_PARSE, "t.cfg:3: chip: ", "control character 0x01"},
    /* consistency, reported at the line that set the field */
    {"base = edge\n[sram]\nbanks = 16\nbytes_per_cycle = 100\n", PM_ERR_CONFIG, "t.cfg:4: sram.bytes_per_cycle: ",
     "not a multiple of sram.banks (16)"},
    {"base = edge\n[sram]\nbytes_per_cycle = 48\n", PM_ERR_CONFIG, "t.cfg: sram.bytes: ",
     "not a multiple of sram.bytes_per_cycle (48)"},
    {"base = edge\n[sram]\naccumulator_bytes = 1 KiB\n", PM_ERR_CONFIG, "t.cfg:3: sram.accumulator_bytes: ",
     "cannot hold one 32x32 fp32 output tile (4096 bytes)"},
    {"base = edge\n[sram]\naccumulator_bytes = 4098\n", PM_ERR_CONFIG, "t.cfg:3: sram.accumulator_bytes: ",
     "multiple of 4"},
    {"base = edge\n[chip]\nengines = 4\n[dram]\nbytes = 4 MiB\n", PM_ERR_CONFIG, "t.cfg:5: dram.bytes: ",
     "smaller than the SRAM of all engines"},
    {"base = edge\n[chip]\ntdp_w = 0.1\n", PM_ERR_CONFIG, "t.cfg:3: chip.tdp_w: ", "below energy.static_w"},
    {"[chip]\nclock_mhz = 1000\n", PM_ERR_CONFIG, "t.cfg: chip.engines: ", "missing"},
    {"name = x\n", PM_ERR_CONFIG, "t.cfg: chip.clock_mhz: ", "missing"},
};

TEST(malformed_inputs_name_line_and_field)
{
    pm_config unset;
    pm_config_init_unset(&unset);
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *b = &bad_cases[i];
        pm_config c = unset;
        pm_error err;
        pm_error_clear(&err);
        pm_status s = pm_config_parse("t.cfg", b->text, &c, &err);
        const char *after = strncmp(err.message, b->prefix, strlen(b->prefix)) == 0 ? err.message + strlen(b->prefix)
                                                                                   : NULL;
        CHECK_MSG(s == b->status && after && strstr(after, b->reason),
                  "case %zu: want %s '%s...%s', got %s '%s'", i, pm_status_name(b->status), b->prefix, b->reason,
                  pm_status_name(s), err.message);
        CHECK_MSG(pm_config_equal(&c, &unset), "case %zu: a failed parse changed the config", i);
    }
    CHECK(sizeof bad_cases / sizeof bad_cases[0] >= 15);
}

TEST(line_too_long_and_nul_byte)
{
    pm_config c;
    pm_config_init_unset(&c);
    pm_error err;
    size_t n = PM_CONFIG_LINE_MAX + 40;
    char *text = malloc(n + 64);
    if (!text) return;
    int head = snprintf(text, 64, "base = edge\n[chip]\n# ");
    memset(text + head, 'x', n);
    strcpy(text + head + n, "\n");
    CHECK(pm_config_parse("long.cfg", text, &c, &err) == PM_ERR_PARSE);
    CHECK_MSG(strncmp(err.message, "long.cfg:3: chip: line too long", 31) == 0, "%s", err.message);
    free(text);

    /* A line of exactly the limit is fine. */
    char ok[PM_CONFIG_LINE_MAX + 64];
    head = snprintf(ok, sizeof ok, "base = edge\n#");
    memset(ok + head, 'y', PM_CONFIG_LINE_MAX - 1);
    strcpy(ok + head + PM_CONFIG_LINE_MAX - 1, "\n");
    CHECK_MSG(pm_config_parse("limit.cfg", ok, &c, &err) == PM_OK, "%s", err.message);

    /* NUL bytes only reach the parser through a file. */
    char path[] = "/tmp/pm_test_config_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    static const char body[] = "base = edge\n[chip]\nengines = 2\0junk\n";
    CHECK(write(fd, body, sizeof body - 1) == (ssize_t)(sizeof body - 1));
    close(fd);
    CHECK(pm_config_load_file(path, &c, &err) == PM_ERR_PARSE);
    char want[128];
    snprintf(want, sizeof want, "%s:3: chip: NUL byte at column 12", path);
    CHECK_MSG(strcmp(err.message, want) == 0, "got '%s'", err.message);
    unlink(path);
}

TEST(load_file_crlf_comments_and_default_name)
{
    char path[] = "/tmp/pm_test_config_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    static const char body[] = "; windows file\r\nbase = edge\r\ndescription = a # b ; c\r\n"
                               "[chip]   # section comment\r\n  engines=2#not a comment, no space\r\n";
    CHECK(write(fd, body, sizeof body - 1) == (ssize_t)(sizeof body - 1));
    close(fd);
    pm_config c;
    pm_error err;
    pm_error_clear(&err);
    CHECK(pm_config_load_file(path, &c, &err) == PM_ERR_PARSE); /* "2#not..." is not a number */
    CHECK_MSG(strstr(err.message, ":5: chip.engines: bad number"), "%s", err.message);

    static const char body2[] = "; windows file\r\nbase = edge\r\ndescription = a # b ; c\r\n"
                                "[chip]   # section comment\r\n  engines = 2  # two engines\r\n";
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fwrite(body2, 1, sizeof body2 - 1, f);
    fclose(f);
    CHECK_MSG(pm_config_load_file(path, &c, &err) == PM_OK, "%s", err.message);
    CHECK(c.engines == 2);
    CHECK(strcmp(c.description, "a # b ; c") == 0);
    CHECK(strcmp(c.name, strrchr(path, '/') + 1) == 0); /* mkstemp names are valid names */
    unlink(path);
    CHECK(pm_config_load_file(path, &c, &err) == PM_ERR_IO);
}

TEST(validate_names_the_field)
{
    pm_config c;
    if (!load_preset("edge", &c)) return;
    pm_error err;
    pm_config bad = c;
    bad.vector_lanes = 12;
    CHECK(pm_config_validate(&bad, &err) == PM_ERR_CONFIG);
    CHECK_MSG(strcmp(err.message, "edge: vector.lanes: 12 is not a power of two") == 0, "%s", err.message);
    bad = c;
    bad.clock_mhz = NAN;
    CHECK(pm_config_validate(&bad, &err) == PM_ERR_CONFIG && strstr(err.message, "edge: chip.clock_mhz: missing"));
    bad = c;
    bad.energy_lfu_pj_per_eval = INFINITY;
    CHECK(pm_config_validate(&bad, &err) == PM_ERR_CONFIG &&
          strstr(err.message, "energy.lfu_pj_per_eval: inf pJ/evaluation is out of range"));
    bad = c;
    bad.tensor_dataflow = (pm_dataflow)7;
    CHECK(pm_config_validate(&bad, &err) == PM_ERR_CONFIG && strstr(err.message, "tensor.dataflow"));
    bad = c;
    bad.engines = 0;
    CHECK(pm_config_validate(&bad, &err) == PM_ERR_CONFIG && strstr(err.message, "chip.engines: 0 is out of range"));
    bad = c;
    bad.name[0] = '\0';
    CHECK(pm_config_validate(&bad, &err) == PM_ERR_CONFIG && strstr(err.message, "config: name: missing"));
    bad = c;
    memset(bad.name, 'a', sizeof bad.name); /* not terminated */
    CHECK(pm_config_validate(&bad, &err) == PM_ERR_CONFIG && strstr(err.message, "name:"));
    bad = c;
    snprintf(bad.description, sizeof bad.description, "two\nlines");
    CHECK(pm_config_validate(&bad, &err) == PM_ERR_CONFIG && strstr(err.message, "description: control character"));
    bad = c;
    snprintf(bad.description, sizeof bad.description, "trailing ");
    CHECK(pm_config_validate(&bad, &err) == PM_ERR_CONFIG && strstr(err.message, "description:"));
    bad = c;
    bad.lfu_slots = 9;
    CHECK(pm_config_validate(&bad, &err) == PM_ERR_CONFIG && strstr(err.message, "lfu.slots"));
    bad = c;
    bad.dram_gbps = 0;
    CHECK(pm_config_validate(&bad, &err) == PM_ERR_CONFIG && strstr(err.message, "dram.bandwidth_gbps"));
    bad = c;
    bad.queue_depth = 1025;
    CHECK(pm_config_validate(&bad, &err) == PM_ERR_CONFIG && strstr(err.message, "control.queue_depth"));
    pm_config unset;
    pm_config_init_unset(&unset);
    CHECK(pm_config_validate(&unset, &err) == PM_ERR_CONFIG);
    CHECK(pm_config_validate(NULL, &err) == PM_ERR_INVALID);
}

/* Deterministic generator local to the test (no shared state). */
static uint32_t next_random(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*state >> 33);
}

/* Whatever comes back, it is a status with a message, never a crash, and a
 * success is a config that validates. */
static void parse_must_survive(const char *text, uint64_t *rng)
{
    pm_config c;
    uint32_t start = next_random(rng) % 3;
    if (start == 0)
        pm_config_init_unset(&c);
    else if (start == 1)
        pm_config_preset("edge", &c, NULL);
    else
        memset(&c, 0, sizeof c); /* a caller that forgot pm_config_init_unset */
    pm_error err;
    pm_error_clear(&err);
    pm_status s = pm_config_parse("fuzz.cfg", text, &c, &err);
    if (s == PM_OK) {
        CHECK_MSG(pm_config_validate(&c, &err) == PM_OK, "accepted an invalid config: %s", err.message);
        char *canon = pm_config_to_text(&c);
        pm_config back;
        pm_config_init_unset(&back);
        CHECK(canon && pm_config_parse("canon.cfg", canon, &back, &err) == PM_OK && pm_config_equal(&c, &back));
        free(canon);
    } else {
        CHECK(s == PM_ERR_PARSE || s == PM_ERR_CONFIG);
        CHECK_MSG(strncmp(err.message, "fuzz.cfg", 8) == 0, "message without its source: %s", err.message);
    }
}

TEST(truncations_and_garbage_never_crash)
{
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (size_t p = 0; pm_preset_files[p][0]; p++) {
        const char *file = pm_preset_files[p][1];
        size_t len = strlen(file);
        char *buf = malloc(len + 1);
        if (!buf) return;
        for (size_t cut = 0; cut <= len; cut++) { /* every prefix */
            memcpy(buf, file, cut);
            buf[cut] = '\0';
            parse_must_survive(buf, &rng);
        }
        for (int round = 0; round < 3000; round++) { /* a few flipped bytes */
            memcpy(buf, file, len + 1);
            int flips = 1 + (int)(next_random(&rng) % 4);
            for (int k = 0; k < flips; k++) {
                size_t at = next_random(&rng) % len;
                char c = (char)(next_random(&rng) % 255 + 1);
                buf[at] = c;
            }
            parse_must_survive(buf, &rng);
        }
        free(buf);
    }
    char junk[3000];
    static const char alphabet[] = "[]=#;. \t\n-+eE0123456789abcdefghijklmnopqrstuvwxyzKMGiB_";
    for (int round = 0; round < 3000; round++) {
        size_t n = next_random(&rng) % (sizeof junk - 1);
        bool printable = round & 1;
        for (size_t i = 0; i < n; i++)
            junk[i] = printable ? alphabet[next_random(&rng) % (sizeof alphabet - 1)]
                                : (char)(next_random(&rng) % 255 + 1);
        junk[n] = '\0';
        parse_must_survive(junk, &rng);
    }
}

int main(void)
{
    RUN(preset_names_match_embedded_files);
    RUN(every_preset_parses_validates_and_is_named_after_its_file);
    RUN(edge_preset_matches_architecture_brief);
    RUN(fpga_preset_power_adds_up_to_4_5_watts);
    RUN(datacenter_preset_shape);
    RUN(to_text_round_trips_every_preset);
    RUN(to_text_round_trips_awkward_values);
    RUN(base_inherits_and_overrides);
    RUN(every_field_missing_is_named);
    RUN(malformed_inputs_name_line_and_field);
    RUN(line_too_long_and_nul_byte);
    RUN(load_file_crlf_comments_and_default_name);
    RUN(validate_names_the_field);
    RUN(truncations_and_garbage_never_crash);
    return TEST_SUMMARY();
}
