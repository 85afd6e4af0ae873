"""The person's browser, for `mtor email login` in tests (run through BROWSER=... %s).

It opens the sign-in URL, lets the provider approve, and follows the
redirect to mtor's loopback server, as a browser does after "Allow".
"""

import sys
import urllib.request

with urllib.request.urlopen(sys.argv[1], timeout=30) as page:
    page.read()
