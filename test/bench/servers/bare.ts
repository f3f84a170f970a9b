/** The floor: bare `node:http` answering 200 with the headers a real `/auth` 200 carries. */
import { listen, readSettings } from './common.ts';

const settings = readSettings();
const headers = { ...settings.headers };

listen((_req, res) => {
  res.writeHead(200, headers);
  res.end();
}, settings.port);
