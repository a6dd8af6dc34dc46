// Builds what the page needs that is not written by hand (run by `make assets`):
// - sessions_http/static/panel/world-110m.json: every country of Natural Earth's 1:110m map
//   (the world-atlas package), projected ahead of time (equirectangular, 960 x 480) into SVG
//   paths, with its ISO 3166-1 alpha-2 code, so that the browser needs no map library;
// - tests/web/axe.min.js: axe-core, for the browser tests.
// The component, the page and its script and style sit beside the map in
// sessions_http/static/panel/ as they are written: plain modules, no bundler.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { geoEquirectangular, geoPath } from "d3-geo";
import countries from "i18n-iso-countries";
import { feature } from "topojson-client";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const out = join(root, "sessions_http", "static", "panel");
mkdirSync(out, { recursive: true });

const WIDTH = 960;
const HEIGHT = 480;
// The map shows down to 60°S: nobody signs in from Antarctica.
const VIEW_HEIGHT = ((90 + 60) * HEIGHT) / 180;
// x = (lon + 180) * WIDTH / 360, y = (90 - lat) * HEIGHT / 180: the component places markers
// with the same formula.
const projection = geoEquirectangular()
  .scale(WIDTH / (2 * Math.PI))
  .translate([WIDTH / 2, HEIGHT / 2]);
const path = geoPath(projection).digits(1);

const topology = JSON.parse(
  readFileSync(join(here, "node_modules", "world-atlas", "countries-110m.json"), "utf-8"),
);
const shapes = feature(topology, topology.objects.countries)
  .features.map((country) => ({
    code: countries.numericToAlpha2(country.id) ?? null,
    name: country.properties.name,
    d: path(country),
  }))
  .filter((shape) => shape.d && shape.code !== "AQ");
writeFileSync(
  join(out, "world-110m.json"),
  JSON.stringify({ width: WIDTH, height: HEIGHT, viewHeight: VIEW_HEIGHT, countries: shapes }),
);

copyFileSync(
  join(here, "node_modules", "axe-core", "axe.min.js"),
  join(root, "tests", "web", "axe.min.js"),
);
console.log(`built ${shapes.length} countries into ${out}, and axe-core for the tests`);
