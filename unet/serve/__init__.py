"""What the app serves, without TensorFlow: the layer between the runtime and app.py's page.

    handlers.py     what each event does (segment, the on-device result, a change of model)
    compare.py      the model catalog, and two backends (or a backend and the page) side by side
    browser.py      the browser backend's routes and headers, and the hostile-payload check of
                    what the page sends back
    components.py   the upload component and the on-device panel (HTML and its module loader)
    launch.py       the server's start, as every deployment starts it
"""
