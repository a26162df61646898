 B3m.gpt_neox.layers.0.post_attention_layernorm.weightJ€ª†¸.¤¹´9l7h¹
Ã9e;9Ô]¹Sb·¸W¿¹õ1É¸ÑL¹8Qì(8 Ü‘¸"5¹mÈ¸tVE¹¦½¹²ÇÖ7áîY8óWœ8Óİ85gË9G¹#.Ì8–îH8“ÉŠ¹GÒç8÷¹À¹Öw9ûøN8`¸8