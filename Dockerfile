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

COPY --chown=app:app unet/ unet/
COPY --chown=app:app export/ export/
COPY --chown=app:app assets/ assets/
COPY --chown=app:app app.py .

USER app
EXPOSE 7860
CMD ["python", "app.py"]
