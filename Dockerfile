# The demo app: docker build -t unet-edge . && docker run -p 7860:7860 unet-edge
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False \
    TF_CPP_MIN_LOG_LEVEL=2

RUN useradd --create-home --uid 1000 app
WORKDIR /home/app/unet-edge

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# The browser backend's npm modules (LiteRT.js; not the test-only devDependencies), as
# web/package-lock.json pins them; node is needed only to install them, so it is removed again
# in the same layer.
COPY web/package.json web/package-lock.json web/
RUN apt-get update -q && apt-get install -y -q --no-install-recommends nodejs npm \
    && (cd web && npm ci --omit=dev --no-audit --no-fund --loglevel=error) \
    && apt-get purge -y -q nodejs npm && apt-get autoremove -y -q && rm -rf /var/lib/apt/lists/* /root/.npm

COPY --chown=app:app unet/ unet/
COPY --chown=app:app export/ export/
COPY --chown=app:app assets/ assets/
COPY --chown=app:app web/*.js web/
COPY --chown=app:app app.py .

USER app
EXPOSE 7860
CMD ["python", "app.py"]
