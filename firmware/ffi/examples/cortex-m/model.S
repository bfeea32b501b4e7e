/* model.S: the .spark file embedded in flash, aligned to SPARK_MODEL_ALIGN (64) bytes.
 * SPARK_MODEL_FILE is the path to the file (set by the build). */
    .section .rodata.spark_model, "a"
    .balign 64
    .global spark_model_blob
spark_model_blob:
    .incbin SPARK_MODEL_FILE
    .global spark_model_blob_end
spark_model_blob_end:
